"""The lab itself: namespaces always go away, traffic counts are exact, tables round-trip.

The kernel tests of the parser and the demo trust these properties, so they are checked
here against the kernel: a probe that claims "one packet per attempt" is held to it by an
independent counter in the node namespace.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico_accountant_cli.lab.calico_rules import (
    LabEndpoint,
    LabPolicy,
    LabPolicyGroup,
    LabRule,
    Layout,
    group_chain_name,
    length_limited_id,
    policy_chain_name,
    render_filter_table,
)
from calico_accountant_cli.lab.iptables import (
    Backend,
    append_rules,
    backend_for_restore,
    missing_backend_tools,
    restore,
    save,
    save_command,
)
from calico_accountant_cli.lab.netns import (
    LabNetwork,
    delete_namespace,
    list_namespaces,
    set_sysctls,
    sweep_orphans,
)
from calico_accountant_cli.lab.topology import Node, PodSpec, build_node, calico_interface_name, pod_addresses
from calico_accountant_cli.lab.traffic import connect, guard_counts, ping, prepare_pods, start_listener
from tests.support.skips import requires_kernel

ROOT = Path(__file__).resolve().parent.parent


kernel = requires_kernel("ip", *missing_backend_tools())
backends = pytest.mark.parametrize("backend", list(Backend), ids=lambda b: b.value)


# --------------------------------------------------------------------------------------
# Pure parts: naming and addressing
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "pod", "interface"),
    [
        # Calico's VethNameForWorkload, as seen on real nodes (dataplane reference §4.4)
        ("k8s-lab", "web-c747ddb74-5dnq5", "cali89c859cc852"),
        ("kube-system", "metrics-server-555d76c778-5zsr9", "calic5a1f1aa0ed"),
        ("default", "db-8d66ff5f7-bp6kf", "cali95aa86cbb2a"),
    ],
)
def test_interface_names_are_calicos(namespace: str, pod: str, interface: str) -> None:
    assert calico_interface_name(namespace, pod) == interface
    assert len(calico_interface_name(namespace, pod, prefix="azv")) == 14


def test_policy_chain_names_follow_felix() -> None:
    assert length_limited_id("cali-pi-", "default/knp.default.allow-nginx") == "cali-pi-_dMXF9XERrXSkww4mw6F"
    assert length_limited_id("cali-pi-", "default.allow-dns") == "cali-pi-default.allow-dns"
    # NP prod/db-access stored as prod/default.db-access: v3.0-3.28 and v3.29-3.31 schemes
    policy = LabPolicy("prod", "db-access")
    assert policy_chain_name(policy, "ingress", Layout.V3_27) == "cali-pi-_uinPMu5xdMIkFw9j6KO"
    assert policy_chain_name(policy, "ingress", Layout.V3_30) == "cali-pi-_9S8ilcqcxTLJ9vT2PlG"
    assert policy_chain_name(policy, "egress", Layout.V3_30) == "cali-po-_9S8ilcqcxTLJ9vT2PlG"


def test_pod_addresses_are_unique_and_in_the_lab_ranges() -> None:
    addresses = [pod_addresses(index) for index in range(0, 40_000, 7)]
    assert len({v4 for v4, _ in addresses}) == len(addresses)
    assert len({v6 for _, v6 in addresses}) == len(addresses)
    assert all(v4.startswith("169.254.") and v4 != "169.254.1.1" for v4, _ in addresses)
    assert all(v6.startswith("2001:db8:") for _, v6 in addresses)
    with pytest.raises(ValueError):
        pod_addresses(40_000)


def test_rendered_lab_table_has_felix_markers() -> None:
    allow = LabPolicy("shop", "web", ingress=(LabRule("allow", "tcp", 80),))
    deny = LabPolicy("shop", "no", ingress=(LabRule("deny", "tcp", 81),))
    endpoint = LabEndpoint("cali0123456789a", ingress_policies=(allow, deny))
    old = render_filter_table([endpoint], Layout.V3_27)
    new = render_filter_table([endpoint], Layout.V3_30, family=6)
    assert '"Start of policies"' in old and '"Drop if no policies passed packet"' in old
    assert (
        '"Start of tier default"' in new and '"End of tier default. Drop if no policies passed packet"' in new
    )
    assert old.count('"Return if policy accepted"') == 2
    assert "--set-xmark 0x40000/0x40000" in new and "0x40000" not in old
    hashes = re.findall(r'"cali:([^"]+)"', new)
    assert len(hashes) == len(set(hashes)) == new.count("\n[0:0] -A ")


SIX_GROUP = LabPolicyGroup(
    "app == 'six'",
    tuple(LabPolicy("shop", f"p{index}", ingress=(LabRule("allow", "tcp", index),)) for index in range(6)),
)


def test_group_chains_have_felix_blocks() -> None:
    text = render_filter_table([LabEndpoint("cali0123456789a", ingress_policies=(SIX_GROUP,))], Layout.V3_30)
    name = group_chain_name(SIX_GROUP, "ingress", Layout.V3_30)
    assert len(name) == 28 and name.startswith("cali-gi-")
    rules = [line.split(" -A ", 1)[1] for line in text.splitlines() if f" -A {name} " in line]
    jumps = [rule for rule in rules if "-j cali-pi-" in rule]
    assert len(jumps) == 6 and len(rules) == 7
    guarded = ["--mark 0x0/0x30000" in rule for rule in jumps]
    assert guarded == [False, True, True, True, True, False]  # the first of each block of 5 is not
    assert '"Return on verdict"' in rules[5] and "! --mark 0x0/0x30000 -j RETURN" in rules[5]


@pytest.mark.parametrize(("key", "value"), [("kernel.panic", "1"), ("net.ipv4.ip_forward", "1; reboot")])
def test_only_plain_net_sysctls_are_written(key: str, value: str) -> None:
    with pytest.raises(ValueError, match="refusing sysctl"):
        set_sysctls("calab-never-created", {key: value})


def test_restoring_ipv6_counters_avoids_nft() -> None:
    assert backend_for_restore(6, Backend.NFT, counters=True) is Backend.LEGACY
    assert backend_for_restore(6, Backend.NFT, counters=False) is Backend.NFT
    assert backend_for_restore(4, Backend.NFT, counters=True) is Backend.NFT


# --------------------------------------------------------------------------------------
# Namespaces always go away
# --------------------------------------------------------------------------------------


@pytest.mark.kernel
@kernel
def test_namespaces_are_deleted_on_exit_and_on_exceptions() -> None:
    with LabNetwork() as lab:
        made = [lab.namespace("a"), lab.namespace("b")]
        assert set(made) <= set(list_namespaces(lab.prefix))
    assert list_namespaces(lab.prefix) == []

    with pytest.raises(RuntimeError, match="boom"), LabNetwork() as failing:
        failing.namespace("a")
        assert list_namespaces(failing.prefix)
        raise RuntimeError("boom")
    assert list_namespaces(failing.prefix) == []


@pytest.mark.kernel
@kernel
def test_two_labs_never_share_names() -> None:
    with LabNetwork() as first, LabNetwork() as second:
        assert first.prefix != second.prefix
        assert first.namespace("node") != second.namespace("node")


@pytest.mark.kernel
@kernel
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_namespaces_and_processes_are_cleaned_up_on_signals(signum: int) -> None:
    script = textwrap.dedent(
        """
        import signal, sys, time
        from calico_accountant_cli.lab.netns import LabNetwork
        # A shell's background job inherits SIGINT ignored; be an interactive process here.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from calico_accountant_cli.lab.topology import PodSpec, build_node
        from calico_accountant_cli.lab.traffic import start_listener
        with LabNetwork() as lab:
            node = build_node(lab, [PodSpec("a")])
            listener = start_listener(lab, node.pods[0], [8080])
            print(lab.prefix, listener.pid, flush=True)
            time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    prefix, listener_pid = "", ""
    try:
        assert child.stdout is not None
        prefix, listener_pid = child.stdout.readline().split()
        assert len(list_namespaces(prefix)) == 2
        child.send_signal(signum)
        returncode = child.wait(timeout=20)
    finally:
        if child.poll() is None:  # the test failed: clean up after the child ourselves
            child.kill()
            child.wait()
            if listener_pid and Path(f"/proc/{listener_pid}").exists():
                os.kill(int(listener_pid), signal.SIGKILL)
            for name in list_namespaces(prefix) if prefix else []:
                delete_namespace(name)
    assert returncode != 0
    assert list_namespaces(prefix) == []
    assert not Path(f"/proc/{listener_pid}").exists()


@pytest.mark.kernel
@kernel
def test_sweep_removes_namespaces_of_dead_runs_only() -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(finished.stdout)
    orphan = f"calab-{dead_pid}-abcdef-orphan"
    subprocess.run(["ip", "netns", "add", orphan], check=True)
    try:
        with LabNetwork() as lab:
            alive = lab.namespace("alive")
            removed = sweep_orphans()
            assert orphan in removed
            assert alive not in removed and alive in list_namespaces(lab.prefix)
    finally:
        subprocess.run(["ip", "netns", "del", orphan], capture_output=True)
    assert orphan not in list_namespaces()


# --------------------------------------------------------------------------------------
# Tables round-trip
# --------------------------------------------------------------------------------------


@pytest.fixture
def lab() -> Iterator[LabNetwork]:
    with LabNetwork() as network:
        yield network
    assert list_namespaces(network.prefix) == []


_COUNTED = """*filter
:INPUT ACCEPT [11:22]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:cali-x - [0:0]
[7:700] -A FORWARD -j cali-x
[5:300] -A cali-x -p tcp -m comment --comment "cali:abc" -j ACCEPT
[18446744073709551615:1] -A cali-x -j RETURN
COMMIT
"""


@pytest.mark.kernel
@kernel
@backends
@pytest.mark.parametrize("family", [4, 6])
def test_counters_survive_restore_and_save(lab: LabNetwork, backend: Backend, family: int) -> None:
    namespace = lab.namespace("t")
    loaded = restore(namespace, _COUNTED, family=family, backend=backend)
    assert loaded.backend is backend_for_restore(family, backend, counters=True)
    saved = save(namespace, family=family, backend=loaded.backend)
    body = [line for line in saved.splitlines() if line.startswith("[")]
    assert sorted(body) == sorted(line for line in _COUNTED.splitlines() if line.startswith("["))
    assert ":INPUT ACCEPT [11:22]" in saved
    command = shlex.split(save_command(namespace, family=family, backend=loaded.backend))
    by_command = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert [line for line in by_command.splitlines() if line.startswith("[")] == body


@pytest.mark.kernel
@kernel
@backends
@pytest.mark.parametrize("layout", list(Layout), ids=lambda layout: layout.value)
@pytest.mark.parametrize("family", [4, 6])
def test_lab_table_is_what_iptables_save_prints(
    lab: LabNetwork, backend: Backend, layout: Layout, family: int
) -> None:
    endpoints = [
        LabEndpoint(
            "cali0123456789a",
            ingress_policies=(
                LabPolicy("shop", "web", ingress=(LabRule("allow", "tcp", 80), LabRule("log"))),
            ),
            egress_policies=(LabPolicy("shop", "out", egress=(LabRule("deny", "udp", 53), LabRule("pass"))),),
        ),
        LabEndpoint("azv0123456789a", profiles=("kns.shop", "ksa.shop.default")),
        LabEndpoint("eni0123456789a", ingress_policies=(SIX_GROUP,)),
    ]
    text = render_filter_table(endpoints, layout, family=family)
    assert (
        text.count('"Return on verdict"') == 1
        and text.count(f":{group_chain_name(SIX_GROUP, 'ingress', layout)} ") == 1
    )
    namespace = lab.namespace("t")
    loaded = restore(namespace, text, family=family, backend=backend)
    saved = save(namespace, family=family, backend=loaded.backend)
    body = [line for line in saved.splitlines() if not line.startswith("#")]
    assert sorted(body) == sorted(text.splitlines())


# --------------------------------------------------------------------------------------
# Traffic: exactly one new-flow packet per probe
# --------------------------------------------------------------------------------------


def _counting_node(lab: LabNetwork, backend: Backend) -> Node:
    """Two pods; the node counts new flows to ports 7, 8, ICMP, drops port 9, then counts the rest."""
    node = build_node(lab, [PodSpec("client", "lab"), PodSpec("server", "lab")])
    prepare_pods(node, backend)
    for family in (4, 6):
        icmp = "icmp" if family == 4 else "ipv6-icmp"
        append_rules(
            node.netns,
            [
                ["-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-p", "tcp", "--dport", "7"],
                ["-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-p", "tcp", "--dport", "8"],
                ["-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-p", icmp],
                [
                    "-A",
                    "FORWARD",
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "NEW",
                    "-p",
                    "tcp",
                    "--dport",
                    "9",
                    "-j",
                    "DROP",
                ],
                ["-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW"],
            ],
            family=family,
            backend=backend,
        )
    return node


def _node_counts(node: Node, family: int, backend: Backend) -> list[int]:
    """Packets of the five counting rules, in order."""
    saved = save(node.netns, family=family, backend=backend)
    return [int(match) for match in re.findall(r"^\[(\d+):\d+\] -A FORWARD", saved, re.MULTILINE)]


@pytest.mark.kernel
@kernel
@backends
@pytest.mark.parametrize("family", [4, 6])
def test_each_probe_is_exactly_one_new_flow_packet(lab: LabNetwork, backend: Backend, family: int) -> None:
    node = _counting_node(lab, backend)
    client, server = node.pods
    dest = server.ipv4 if family == 4 else server.ipv6
    listener = start_listener(lab, server, [7], family=family)
    assert connect(client, dest, 7, 5).connected == 5  # accepted, listener: SYN, then established
    assert connect(client, dest, 8, 4).refused == 4  # accepted, no listener: SYN, RST reply
    assert ping(client, dest, 3).answered == 3  # one echo request each, reply established
    assert connect(client, dest, 9, 6, timeout=0.3).timed_out == 6  # denied: the SYN only
    listener.stop()
    assert _node_counts(node, family, backend) == [5, 4, 3, 6, 12]
    sent = guard_counts(client.netns, backend, family)
    assert (sent.first_syns, sent.echo_requests, sent.dropped_syn_retransmissions) == (15, 3, 0)


@pytest.mark.kernel
@kernel
@pytest.mark.slow
@backends
def test_syn_retransmissions_never_reach_the_node(lab: LabNetwork, backend: Backend) -> None:
    """Wait past the kernel's 1 s SYN retransmission: the pod's guard drops the retransmits."""
    node = _counting_node(lab, backend)
    client, server = node.pods
    assert connect(client, server.ipv4, 9, 3, timeout=1.6).timed_out == 3
    assert _node_counts(node, 4, backend) == [0, 0, 0, 3, 0]
    sent = guard_counts(client.netns, backend, 4)
    assert sent.first_syns == 3
    assert sent.dropped_syn_retransmissions >= 3  # the kernel did retransmit; none got out


@pytest.mark.kernel
@kernel
def test_pods_reach_each_other_only_through_the_node(lab: LabNetwork) -> None:
    node = build_node(lab, [PodSpec("a"), PodSpec("b"), PodSpec("c")])
    prepare_pods(node, Backend.LEGACY)
    a, b, c = node.pods
    assert len({a.interface, b.interface, c.interface}) == 3
    links = subprocess.run(["ip", "-n", node.netns, "-o", "link"], capture_output=True, text=True, check=True)
    assert all(pod.interface in links.stdout for pod in node.pods)
    assert ping(a, c.ipv4, 2).answered == 2 and ping(c, a.ipv6, 2).answered == 2
    # a FORWARD DROP in the node namespace cuts the pods off: the traffic really is forwarded
    append_rules(node.netns, [["-A", "FORWARD", "-j", "DROP"]], backend=Backend.LEGACY)
    assert ping(a, c.ipv4, 2, timeout=0.3).answered == 0


@pytest.mark.kernel
@kernel
def test_a_stopped_listener_is_gone(lab: LabNetwork) -> None:
    node = build_node(lab, [PodSpec("a"), PodSpec("b")])
    prepare_pods(node, Backend.LEGACY)
    a, b = node.pods
    listener = start_listener(lab, b, [7000, 7001])
    assert listener.ports == (7000, 7001)
    assert connect(a, b.ipv4, 7001, 2).connected == 2
    listener.stop()
    assert not Path(f"/proc/{listener.pid}").exists()
    assert connect(a, b.ipv4, 7001, 2).refused == 2
