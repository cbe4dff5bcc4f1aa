"""The exported metric families, one module per aggregation level (the node_exporter way).

:func:`series_for` says which series of which family a resolved counter adds to; the
series state (:mod:`aggregator.series`) keeps the sums and the exposition
(:mod:`aggregator.exposition`) renders them.
"""

from __future__ import annotations

from collections.abc import Callable

from aggregator.metrics import cluster, compat, node, workload
from aggregator.metrics.family import Level, ResolvedCounter, SeriesFamily, verdict_of

__all__ = [
    "FAMILIES",
    "Level",
    "ResolvedCounter",
    "SeriesFamily",
    "series_for",
    "series_makers",
    "verdict_of",
]

#: Every counter family, in exposition order.
FAMILIES: tuple[SeriesFamily, ...] = (*workload.FAMILIES, *node.FAMILIES, *cluster.FAMILIES, *compat.FAMILIES)

_MODULES = (workload, node, cluster, compat)

SeriesMaker = Callable[[ResolvedCounter], list[tuple[SeriesFamily, tuple[str, ...]]]]


def series_makers(exported: Callable[[SeriesFamily], bool]) -> tuple[SeriesMaker, ...]:
    """The per-level label functions that feed at least one exported family (so a
    disabled level costs nothing per counter)."""
    return tuple(m.series for m in _MODULES if any(exported(family) for family in m.FAMILIES))


def series_for(counter: ResolvedCounter) -> list[tuple[SeriesFamily, tuple[str, ...]]]:
    """Every (family, full label values) ``counter`` contributes to, before level and
    label filtering."""
    out: list[tuple[SeriesFamily, tuple[str, ...]]] = []
    for module in _MODULES:
        out.extend(module.series(counter))
    return out
