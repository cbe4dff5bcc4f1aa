"""Reading a node in felix's nftables mode next to reading it in iptables mode.

Run from the repository root (root and Debian's ``nft`` and iptables needed for the
kernel columns; ``--no-kernel`` skips them)::

    .venv/bin/python -m bench.nft_bench [--quick] [--no-kernel]

For the nodes of ``bench/parser_bench.py`` (``tests.support.felix_render.sized_model``,
pods x policies per pod: 110x6, 250x20, 1000x40, layout v3.30, IPv4), the same node is
rendered as an ``iptables-save -c`` filter table and, by ``tests.support.felix_nft``, as
felix's ``table ip calico`` (``nft -f`` script and ``nft -j`` JSON).  It prints, in ms
(best of several runs):

* ``list``: ``ip netns exec NS nft -j list table ip calico`` of the loaded table (and, for
  reference, the same without ``-j``), and ``iptables-{legacy,nft}-save -c -t filter`` of the
  restored iptables table;
* ``json``: ``json.loads`` alone of the nft output (the standard library's decoder);
* ``cold``: ``parse_node`` on a fresh parser, nft JSON and iptables text;
* ``steady``: a ``SteadyStateParser`` re-reading dumps of the same rules with new counters;
* ``total``: list + steady, what the agent pays per interval in each mode.

A measurement, not a test: nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.parser_bench import best_seconds
from node_agent.parsing import SteadyStateParser, parse_node
from tests.support.felix_nft import to_nft
from tests.support.felix_render import nft_chain_names, render_restore, sized_model
from tests.support.skips import kernel_skip_reason

LAYOUT = "v3.30"


@dataclass
class Row:
    name: str
    rules: int
    nft_megabytes: float
    ipt_megabytes: float
    records: int
    nft_list: float | None
    ipt_save_legacy: float | None
    ipt_save_nft: float | None
    nft_list_text: float | None
    """``nft list table ip calico`` without ``-j`` (for reference: the agent reads JSON)."""
    json_loads: float
    nft_cold: float
    ipt_cold: float
    nft_steady: float
    ipt_steady: float


def _steady(dumps: list[str], repetitions: int) -> float:
    parser = SteadyStateParser()
    parser.parse([("t", dumps[0])])
    times = []
    for dump in dumps[1 : repetitions + 1]:
        gc.collect()
        start = time.perf_counter()
        parser.parse([("t", dump)])
        times.append(time.perf_counter() - start)
    assert parser.fast_path_reads == len(times), "the steady state must take the fast path"
    return min(times)


def _runner(argv: list[str]) -> Callable[[], object]:
    return lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def _loads_without_gc(text: str) -> Callable[[], object]:
    """``json.loads`` as the parser runs it: with the cyclic collector off (it would walk
    the ~10^5 fresh dicts again and again)."""

    def run() -> object:
        gc.disable()
        try:
            return json.loads(text)
        finally:
            gc.enable()

    return run


def _kernel_seconds(script: str, iptables: str, repetitions: int) -> tuple[float | None, ...]:
    from calico_accountant_cli.lab.iptables import Backend, missing_backend_tools, restore, tool
    from calico_accountant_cli.lab.netns import LabNetwork, netns_exec_argv
    from calico_accountant_cli.lab.nftables import list_command
    from calico_accountant_cli.lab.nftables import load_table as load

    if kernel_skip_reason("ip", "nft", *missing_backend_tools()) is not None:
        return None, None, None, None
    results: list[float | None] = []
    with LabNetwork() as lab:
        namespace = lab.namespace("bench-nftables")
        load(namespace, 4, script)
        argv = list_command(namespace, 4).split()
        results.append(best_seconds(_runner(argv), repetitions))
        results.append(best_seconds(_runner([word for word in argv if word != "-j"]), repetitions))
        for backend in (Backend.LEGACY, Backend.NFT):
            ns = lab.namespace(f"bench-ipt-{backend.value}")
            restore(ns, iptables, family=4, backend=backend)
            save = netns_exec_argv(ns, [tool(4, backend, "save"), "-c", "-t", "filter"])
            results.append(best_seconds(_runner(save), repetitions))
    return tuple(results)


def measure(pods: int, policies: int, repetitions: int, kernel: bool) -> Row:
    model = sized_model(pods, policies, layout=LAYOUT, seed=1)
    names = nft_chain_names(model)
    texts = [
        render_restore(model.with_options(flow_seed=1000 + step)).text for step in range(repetitions + 1)
    ]
    nfts = [to_nft(text, 4, names) for text in texts]
    jsons = [nft.json for nft in nfts]
    text, listing = texts[0], jsons[0]
    nft_result = parse_node([("nft", listing)])
    ipt_result = parse_node([("ipt", text)])
    assert len(nft_result.records) == len(ipt_result.records) and not nft_result.diagnostics
    kernel_figures: tuple[float | None, ...] = (None, None, None, None)
    if kernel:
        kernel_figures = _kernel_seconds(nfts[0].script, text, repetitions)
    return Row(
        f"{pods}x{policies}",
        nft_result.rules_seen,
        len(listing.encode()) / 1e6,
        len(text.encode()) / 1e6,
        len(nft_result.records),
        kernel_figures[0],
        kernel_figures[2],
        kernel_figures[3],
        kernel_figures[1],
        best_seconds(_loads_without_gc(listing), repetitions),
        best_seconds(lambda: parse_node([("nft", listing)]), repetitions),
        best_seconds(lambda: parse_node([("ipt", text)]), repetitions),
        _steady(jsons, repetitions),
        _steady(texts, repetitions),
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'node':>8} {'rules':>7} {'nft MB':>6} {'ipt MB':>6} {'records':>7} | "
        f"{'nft list':>8} {'(text)':>8} {'ipt-legacy save':>15} {'ipt-nft save':>12} | {'json':>6} "
        f"{'nft cold':>8} {'ipt cold':>8} | {'nft steady':>10} {'ipt steady':>10} | "
        f"{'nft total':>9} {'legacy total':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        nft_total = None if row.nft_list is None else row.nft_list + row.nft_steady
        ipt_total = None if row.ipt_save_legacy is None else row.ipt_save_legacy + row.ipt_steady
        print(
            f"{row.name:>8} {row.rules:>7} {row.nft_megabytes:>6.1f} {row.ipt_megabytes:>6.1f} "
            f"{row.records:>7} | "
            f"{_ms(row.nft_list):>8} {_ms(row.nft_list_text):>8} "
            f"{_ms(row.ipt_save_legacy):>15} {_ms(row.ipt_save_nft):>12} | "
            f"{_ms(row.json_loads):>6} {_ms(row.nft_cold):>8} {_ms(row.ipt_cold):>8} | "
            f"{_ms(row.nft_steady):>10} {_ms(row.ipt_steady):>10} | {_ms(nft_total):>9} {_ms(ipt_total):>12}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="110x6 and 250x20 only, fewer repetitions")
    parser.add_argument("--no-kernel", action="store_true", help="skip nft list / iptables-save timings")
    args = parser.parse_args(argv)
    sizes = [(110, 6), (250, 20)] if args.quick else [(110, 6), (250, 20), (1000, 40)]
    repetitions = 3 if args.quick else 5
    rows = [measure(pods, policies, repetitions, not args.no_kernel) for pods, policies in sizes]
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
