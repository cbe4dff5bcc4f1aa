"""``calico-accountant demo`` as a user runs it: a real subprocess, real ports, real cleanup.

Each test starts the command, waits until the aggregator's ``/metrics`` shows resolved
policy counters moving, stops it (``--duration``, SIGTERM or Ctrl-C's SIGINT), and then
checks that nothing is left: no network namespace named after the demo's PID, and no
process carrying the run's unique ports on its command line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from calico_accountant_cli.demo.supervisor import python_env
from calico_accountant_cli.lab.netns import list_namespaces
from tests.support.etcd_server import SKIP_REASON, EtcdServer, etcd_available
from tests.support.ports import free_port
from tests.support.skips import kernel_skip_reason, requires_tools
from tests.support.waits import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

DENY_SERIES = re.compile(
    r'^calico_accountant_workload_policy_packets_total\{[^}]*verdict="deny"[^}]*'
    r'policy="deny-frontend-to-payments-api"[^}]*\} (\S+)$',
    re.MULTILINE,
)


def _kernel_skip_reason() -> str | None:
    return kernel_skip_reason("ip", "iptables-legacy-save", "iptables-legacy-restore")


@dataclass
class DemoRun:
    process: subprocess.Popen[str]
    metrics_port: int
    grpc_port: int
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
            ) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, OSError):
            return ""

    def wait_for_denials(self, timeout: float = 60.0) -> float:
        """Until the explicit deny's per-workload counter is above zero; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"demo exited early:\n{self.output}"
            values = [float(v) for v in DENY_SERIES.findall(self.metrics())]
            if values and sum(values) > 0:
                return sum(values)
            time.sleep(0.2)
        raise AssertionError(f"no denials in /metrics within {timeout}s:\n{self.output}")

    def wait(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout)


def _start_demo(*args: str, env: dict[str, str] | None = None) -> DemoRun:
    metrics_port, grpc_port = free_port(), free_port()
    argv = [
        sys.executable, "-m", "calico_accountant_cli", "demo",
        "--metrics-port", str(metrics_port), "--grpc-port", str(grpc_port),
        "--plain", "--interval", "0.5", "--traffic-period", "1", "--refresh", "1", *args,
    ]  # fmt: skip
    # Started as from a terminal: a shell's background job (a CI step run with `&`) inherits
    # SIGINT ignored, the demo keeps what it inherits as programs should, and the Ctrl-C test
    # then waited in vain.  A handler (not SIG_IGN) becomes the default disposition at exec.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env or python_env()
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    run = DemoRun(process, metrics_port, grpc_port)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            run.lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return run


def _leftover_processes(run: DemoRun) -> list[str]:
    """Processes whose command line names this run's ports (the aggregator and the agents)."""
    marks = (
        f"127.0.0.1:{run.grpc_port}",
        f"--metrics-port\0{run.metrics_port}",
        f"--grpc-port\0{run.grpc_port}",
    )
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(mark in cmdline for mark in marks):
            found.append(f"{entry.name}: {cmdline.replace(chr(0), ' ')}")
    return found


def _assert_clean(run: DemoRun) -> None:
    assert list_namespaces(f"calab-{run.process.pid}-") == [], "namespaces left behind"
    deadline = time.monotonic() + 5
    while _leftover_processes(run) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _leftover_processes(run) == []
    for port in (run.metrics_port, run.grpc_port):
        import socket

        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))  # nothing listens any more


@pytest.fixture
def stopper() -> Iterator[list[DemoRun]]:
    """Runs started by a test; any still alive at the end are killed by PID."""
    runs: list[DemoRun] = []
    yield runs
    for run in runs:
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGTERM)
            try:
                run.process.wait(30)
            except subprocess.TimeoutExpired:
                run.process.kill()


def test_demo_runs_for_its_duration_and_cleans_up(stopper: list[DemoRun]) -> None:
    reason = _kernel_skip_reason()
    if reason:
        pytest.skip(reason)
    run = _start_demo("--duration", "12")
    stopper.append(run)
    denied = run.wait_for_denials()
    assert denied >= 1
    assert run.wait() == 0, run.output
    out = run.output
    assert f"http://127.0.0.1:{run.metrics_port}/metrics" in out
    assert f"127.0.0.1:{run.grpc_port}" in out
    assert "kernel: namespaces and iptables" in out
    assert "agents connected: 2" in out
    assert "deny-frontend-to-payments-api" in out, "the live summary names the denying policy"
    assert "stopped (duration)" in out
    _assert_clean(run)


def test_demo_in_felix_nftables_mode(stopper: list[DemoRun]) -> None:
    """``--dataplane nftables``: each node's policy in ``table ip calico``, read by the agents
    with ``--nft-list``; the same policies deny and the namespaces are gone afterwards."""
    reason = _kernel_skip_reason() or kernel_skip_reason("nft")
    if reason:
        pytest.skip(reason)
    run = _start_demo("--dataplane", "nftables", "--duration", "12")
    stopper.append(run)
    assert run.wait_for_denials() >= 1
    tables = run.metrics()
    assert run.wait() == 0, run.output
    assert "kernel: namespaces and nftables" in run.output
    assert "agents connected: 2" in run.output
    assert "calico_accountant_workload_policy_packets_total{" in tables
    _assert_clean(run)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_stops_and_cleans_up_on_signals(stopper: list[DemoRun], signum: int) -> None:
    reason = _kernel_skip_reason()
    if reason:
        pytest.skip(reason)
    run = _start_demo()
    stopper.append(run)
    run.wait_for_denials()
    assert list_namespaces(f"calab-{run.process.pid}-"), "the demo's namespaces exist while it runs"
    assert _leftover_processes(run), "the aggregator and agents run while the demo runs"
    run.process.send_signal(signum)
    assert run.wait(45) == 0, run.output
    assert "stopped" in run.output
    _assert_clean(run)


def test_demo_falls_back_to_replay_without_iptables(stopper: list[DemoRun], tmp_path: Path) -> None:
    env = python_env({"PATH": str(tmp_path)})  # no ip, no iptables: as on a machine without them
    run = _start_demo("--duration", "8", env=env)
    stopper.append(run)
    run.wait_for_denials()
    assert run.wait() == 0, run.output
    assert "falling back to replaying the bundled node dumps" in run.output
    assert "replay of bundled dumps" in run.output
    _assert_clean(run)


def test_demo_against_a_real_etcd(stopper: list[DemoRun]) -> None:
    if not etcd_available():
        pytest.skip(SKIP_REASON)
    with EtcdServer() as etcd:
        mode = () if _kernel_skip_reason() is None else ("--replay",)
        run = _start_demo("--duration", "10", "--datastore", f"etcd://{etcd.endpoint}", *mode)
        stopper.append(run)
        run.wait_for_denials()
        keys = _etcd_keys(etcd.endpoint)
        assert (
            "/calico/resources/v3/projectcalico.org/networkpolicies/payments/default.deny-frontend-to-payments-api"
            in keys
        )
        assert sum("/workloadendpoints/" in key for key in keys) == 8
        assert 'policy_kind="KubernetesNetworkPolicy"' in run.metrics()
        assert run.wait() == 0, run.output
        assert f"etcd://{etcd.endpoint}" in run.output
        _assert_clean(run)
        assert _etcd_keys(etcd.endpoint) == [], "the demo removes what it wrote"


def _etcd_keys(endpoint: str) -> list[str]:
    result = subprocess.run(
        ["etcdctl", f"--endpoints=http://{endpoint}", "get", "--prefix", "--keys-only", "/calico/"],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        check=True,
    )
    return [line for line in result.stdout.splitlines() if line.strip()]


@requires_tools("prometheus", "promtool")
def test_demo_with_prometheus_fires_the_deploys_drop_alert(stopper: list[DemoRun]) -> None:
    """A newcomer's view: the deploy's rules loaded into a real Prometheus scraping the demo,
    and the per-app no-policy-drop alert going pending on the demo's default-deny drops."""
    reason = _kernel_skip_reason()
    if reason:
        pytest.skip(reason)
    prometheus_port = free_port()
    run = _start_demo("--duration", "100", "--with-prometheus", str(prometheus_port))
    stopper.append(run)

    def drop_alert() -> dict[str, object] | None:
        assert run.process.poll() is None, f"demo exited early:\n{run.output}"
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{prometheus_port}/api/v1/alerts", timeout=2
            ) as answer:
                alerts = json.load(answer)["data"]["alerts"]
        except (urllib.error.URLError, OSError):
            return None
        return next(
            (a for a in alerts if a["labels"]["alertname"] == "CalicoAccountantNoPolicyDrops"
             and a["labels"].get("namespace") == "shop"),
            None,
        )  # fmt: skip

    alert = wait_until(drop_alert, timeout=80, interval=1.0, what="the drop alert pending or firing")
    assert alert["state"] in ("pending", "firing")
    assert f"http://127.0.0.1:{prometheus_port}/alerts" in run.output
    run.process.send_signal(signal.SIGTERM)
    assert run.wait(30) == 0
    _assert_clean(run)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/-/ready", timeout=2)


@requires_tools("promtool")
def test_the_printed_prometheus_configuration_is_valid_with_the_deploys_rules(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "calico_accountant_cli", "demo", "--prometheus-config",
         "--metrics-port", "9109"],
        capture_output=True, text=True, timeout=60, env=python_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = tmp_path / "prometheus.yml"
    config.write_text(done.stdout)
    checked = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "127.0.0.1:9109" in done.stdout and "honor_labels: true" in done.stdout
    assert "rules found" in checked.stdout
