"""The aggregator's ``/metrics`` as served, from a real :class:`~aggregator.server.Aggregator`
object: the deploy/monitoring and deploy/grafana tests check their PromQL against it.

The sample cluster (``calico_accountant_cli/sample``) is its catalog, both sample nodes'
tables (with made-up counters) are applied as a baseline and a later read with every counter
doubled, and the text is what ``serve_metrics`` serves: the accountant's families followed
by the process's own registry (ingest, hits, datastore, checkpoint, leader, ``process_*``).
Nothing is started: no port is bound, no datastore is contacted.
"""

from __future__ import annotations

import asyncio
import re
from importlib import resources
from pathlib import Path

from prometheus_client import generate_latest

from aggregator.catalog.index import Catalog
from aggregator.datastore.file import decode_text
from aggregator.exposition.text import render_text
from aggregator.server import Aggregator, AggregatorConfig
from node_agent.parsing import parse_node
from tests.support.accounting import snapshot
from tests.support.dumps import scale_dump, with_counters

__all__ = ["aggregator_exposition", "exposed_names", "label_sets"]

_SAMPLE = resources.files("calico_accountant_cli").joinpath("sample")
_NOW = 1_700_000_100.0
_SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", re.MULTILINE)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}


def aggregator_exposition(directory: Path) -> str:
    """The text of one scrape of an aggregator that has seen both sample nodes twice."""
    return asyncio.run(_exposition(directory))


async def _exposition(directory: Path) -> str:
    """Inside an event loop, as ``run_aggregator`` builds it (its gRPC server wants one)."""
    config = AggregatorConfig(
        datastore=f"file:{_SAMPLE.joinpath('cluster.yaml')}",
        checkpoint=f"file:{directory / 'checkpoint'}",
        health_host="127.0.0.1",
        health_port=0,
    )
    aggregator = Aggregator(config)
    aggregator.accountant.set_resolver(
        Catalog.from_objects(decode_text(_SAMPLE.joinpath("cluster.yaml").read_text()).objects)
    )
    for node in ("node-a", "node-b"):
        dump = with_counters(_SAMPLE.joinpath(f"{node}.v3.30.save").read_text())
        for sequence, factor in ((1, 1), (2, 2)):
            records = parse_node([("ipv4", scale_dump(dump, factor))]).records
            update = snapshot(node, records, sequence=sequence, read_time=_NOW - 10 + sequence)
            aggregator.accountant.apply(update, _NOW - 10 + sequence)
        aggregator.accountant.set_connected(node, True)
    text = render_text(aggregator.accountant.view(_NOW))
    return text + generate_latest(aggregator.registry).decode()


def exposed_names(text: str) -> set[str]:
    """Every series name a query can use: the samples', and for families without samples yet
    (a labelled counter nobody incremented) the names their TYPE line promises."""
    names = {match.group(1) for match in _SAMPLE_LINE.finditer(text)}
    for family, kind in _TYPE_LINE.findall(text):
        suffixes = _SUFFIXES.get(kind, ())
        base = family.removesuffix("_total") if kind == "counter" else family
        names.add(family if kind not in _SUFFIXES else base + suffixes[0])
        names.update(base + suffix for suffix in suffixes)
        if kind not in _SUFFIXES:
            names.add(family)
    return names


def label_sets(text: str) -> dict[str, set[frozenset[str]]]:
    """For every series name, the label names its samples carry (one set per distinct shape)."""
    shapes: dict[str, set[frozenset[str]]] = {}
    for match in _SAMPLE_LINE.finditer(text):
        keys = frozenset(name for name, _ in _LABEL.findall(match.group(2) or ""))
        shapes.setdefault(match.group(1), set()).add(keys)
    return shapes
