"""The exported metric families, one module per aggregation level (the node_exporter way).

Each level's module declares its families and a ``series(names, key)`` function saying which
series of them (at most one) a resolved counter (its run's names and its own key) adds to;
:func:`series_makers` hands the series state (:mod:`aggregator.series`) the functions of the
exported levels, and the exposition (:mod:`aggregator.exposition`) renders the sums.
"""

from __future__ import annotations

from collections.abc import Callable

from aggregator.metrics import app, cluster, compat, host_endpoint, node, workload
from aggregator.metrics.family import Level, Series, SeriesFamily
from aggregator.model import CounterNames
from calico_accountant.records import CounterKey

__all__ = [
    "FAMILIES",
    "Level",
    "SeriesFamily",
    "series_makers",
]

#: Every counter family, in exposition order.
FAMILIES: tuple[SeriesFamily, ...] = (
    *workload.FAMILIES,
    *app.FAMILIES,
    *node.FAMILIES,
    *host_endpoint.FAMILIES,
    *cluster.FAMILIES,
    *compat.FAMILIES,
)

_MODULES = (workload, app, node, host_endpoint, cluster, compat)

SeriesMaker = Callable[[CounterNames, CounterKey], Series | None]


def series_makers(exported: Callable[[SeriesFamily], bool]) -> tuple[SeriesMaker, ...]:
    """The per-level label functions that feed at least one exported family (so a
    disabled level costs nothing per counter)."""
    return tuple(m.series for m in _MODULES if any(exported(family) for family in m.FAMILIES))
