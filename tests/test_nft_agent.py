"""The agent in nftables mode: dataplane choice, ``--nft-list`` reads, what it reports."""

from __future__ import annotations

import asyncio
import random
import subprocess
from pathlib import Path

import pytest

from calico_accountant.v1 import snapshot_pb2 as pb
from node_agent.agent import _record_read, add_arguments, config_from_args
from node_agent.dataplane import Dataplane, decide_dataplane, nft_commands, nft_has_calico_chains
from node_agent.health import AgentMetrics, AgentStatus
from node_agent.parsing import SteadyStateParser, parse_node
from node_agent.reader import NodeReader, dataplane_of, family_of
from tests.support.felix_nft import to_nft
from tests.support.felix_render import build_model, nft_chain_names, render
from tests.support.skips import requires_kernel


def _rendered(family: int = 4, seed: int = 3) -> tuple[str, str]:
    """(iptables-save text, nft -j JSON) of the same random v3.30 node."""
    model = build_model(random.Random(seed), "v3.30", endpoints=3, policies=5)
    model = model.with_options(framing="save", counter_form="prefix", family=family)
    text = render(model).text
    return text, to_nft(text, family, nft_chain_names(model)).json


def test_decide_dataplane() -> None:
    _, listing = _rendered()
    empty = b'{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "calico"}}]}'
    assert nft_has_calico_chains(listing.encode()) and not nft_has_calico_chains(empty)
    assert decide_dataplane(Dataplane.AUTO, listing.encode(), False)[0] is Dataplane.NFTABLES
    assert decide_dataplane(Dataplane.AUTO, None, True)[0] is Dataplane.IPTABLES
    assert decide_dataplane(Dataplane.AUTO, empty, True)[0] is Dataplane.IPTABLES
    migrating, note = decide_dataplane(Dataplane.AUTO, listing.encode(), True)
    assert migrating is Dataplane.NFTABLES and "both" in note and "reading nftables" in note
    assert decide_dataplane(Dataplane.IPTABLES, listing.encode(), True)[0] is Dataplane.IPTABLES
    assert decide_dataplane(Dataplane.NFTABLES, None, True)[0] is Dataplane.NFTABLES
    assert nft_commands() == ["nft -j list table ip calico", "nft -j list table ip6 calico"]


def test_sources_say_nftables_and_their_family() -> None:
    _, v4 = _rendered(4)
    _, v6 = _rendered(6)
    assert dataplane_of("x", v4.encode()) == pb.NFTABLES
    assert (family_of("cat a", v4.encode()), family_of("cat b", v6.encode())) == (4, 6)
    text, _ = _rendered()
    assert dataplane_of("cat x", text.encode()) != pb.NFTABLES


def test_flags() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--node", "n1", "--nft-list", "cat a.json", "--nft-list", "cat b.json", "--dataplane", "nftables"]
    )
    config = config_from_args(args)
    assert config.nft_commands == ("cat a.json", "cat b.json") and config.dataplane == "nftables"
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataplane", "ebpf"])


def test_reader_metrics_say_which_dataplane(tmp_path: Path) -> None:
    text, listing = _rendered()
    (tmp_path / "v4.json").write_text(listing)
    (tmp_path / "v4.save").write_text(text)
    commands = [f"cat {tmp_path / 'v4.json'}", f"cat {tmp_path / 'v4.save'}"]
    read = asyncio.run(NodeReader(commands, parser=SteadyStateParser()).read())
    assert [source.dataplane for source in read.sources] == [pb.NFTABLES, pb.IPTABLES_NFT]
    metrics = AgentMetrics()
    _record_read(read, metrics, AgentStatus(started=0.0, stall_after=1.0))
    values = {
        sample.labels["dataplane"]: sample.value
        for family in metrics.dataplane_tables.collect()
        for sample in family.samples
    }
    assert values["nftables"] == 1 and values["iptables-nft"] == 1 and values["iptables-legacy"] == 0


@pytest.mark.kernel
@requires_kernel("ip", "nft", "iptables-legacy-restore")
def test_auto_detection_and_nft_list_reads_in_a_namespace() -> None:
    """Debian's nft in a namespace: with only iptables Calico chains auto reads iptables; with
    felix's nft table too (a migration) it reads nftables and says both are there; the
    ``--nft-list`` commands read the records the parser gives for the listed tables."""
    from calico_accountant_cli.lab.iptables import Backend as LabBackend
    from calico_accountant_cli.lab.iptables import restore
    from calico_accountant_cli.lab.netns import LabNetwork, list_namespaces
    from calico_accountant_cli.lab.nftables import list_command, list_table
    from calico_accountant_cli.lab.nftables import load_table as load

    model = build_model(random.Random(8), "v3.30", endpoints=3, policies=5)
    with LabNetwork() as lab:
        namespace = lab.namespace("nft-agent")

        def nft_listing() -> bytes | None:
            done = subprocess.run(
                list_command(namespace, 4).split(), capture_output=True, timeout=30, check=False
            )
            return done.stdout if done.returncode == 0 else None

        iptables_text = render(
            model.with_options(framing="save", counter_form="prefix", other_tables=False)
        ).text
        restore(namespace, iptables_text, family=4, backend=LabBackend.LEGACY)
        assert nft_listing() is None
        assert decide_dataplane(Dataplane.AUTO, nft_listing(), True)[0] is Dataplane.IPTABLES
        for family in (4, 6):
            rendered = render(model.with_options(framing="save", counter_form="prefix", family=family))
            load(namespace, family, to_nft(rendered.text, family, nft_chain_names(model)).script)
        chosen, note = decide_dataplane(Dataplane.AUTO, nft_listing(), True)
        assert chosen is Dataplane.NFTABLES and "both" in note
        commands = [list_command(namespace, family) for family in (4, 6)]
        read = asyncio.run(NodeReader(commands).read())
        assert [(s.dataplane, s.family) for s in read.sources] == [(pb.NFTABLES, 4), (pb.NFTABLES, 6)]
        direct = parse_node([(f"v{family}", list_table(namespace, family)) for family in (4, 6)])
        assert sorted(read.records) == sorted(r.key for r in direct.records) and read.records
    assert not list_namespaces(lab.prefix)


@pytest.mark.kernel
@requires_kernel("ip", "nft", "iptables-legacy-restore")
def test_choose_dataplane_runs_nft_and_iptables_like_the_agent() -> None:
    """``choose_dataplane('auto', 'auto')`` run inside a namespace (as the agent runs on a
    node): iptables only -> iptables; felix's nft table too -> nftables, flagged as a migration;
    and the chosen commands read the records."""
    import sys

    from calico_accountant_cli.lab.iptables import Backend as LabBackend
    from calico_accountant_cli.lab.iptables import restore
    from calico_accountant_cli.lab.netns import LabNetwork, list_namespaces
    from calico_accountant_cli.lab.nftables import load_table
    from tests.support.processes import REPO

    probe = (
        "import asyncio\n"
        "from node_agent.dataplane import choose_dataplane\n"
        "from node_agent.reader import NodeReader\n"
        "choice = asyncio.run(choose_dataplane('auto', 'auto', ipv6=False))\n"
        "read = asyncio.run(NodeReader(list(choice.commands)).read())\n"
        "print(choice.dataplane.value, choice.migrating, choice.commands[0], len(read.records), sep='|')\n"
    )
    model = build_model(random.Random(8), "v3.30", endpoints=3, policies=5)
    saved = model.with_options(framing="save", counter_form="prefix", other_tables=False)
    with LabNetwork() as lab:
        namespace = lab.namespace("nft-choose")

        def run_probe() -> list[str]:
            done = subprocess.run(
                ["ip", "netns", "exec", namespace, sys.executable, "-c", probe],
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout.strip().split("|")

        restore(namespace, render(saved).text, family=4, backend=LabBackend.LEGACY)
        chosen, migrating, command, records = run_probe()
        assert (chosen, migrating) == ("iptables", "False") and "iptables" in command and int(records) > 0
        load_table(namespace, 4, to_nft(render(saved).text, 4, nft_chain_names(model)).script)
        chosen, migrating, command, records = run_probe()
        assert (chosen, migrating, command) == ("nftables", "True", "nft -j list table ip calico")
        assert int(records) == len(parse_node([("t", render(saved).text)]).records)
    assert not list_namespaces(lab.prefix)
