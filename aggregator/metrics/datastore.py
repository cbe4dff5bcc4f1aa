"""``calico_accountant_datastore_*``: can the aggregator's names be trusted right now?

Whether the datastore is synced and at which revision, how often its source had to list
again or reconnect, which objects it skipped as bad, and how the current catalog
resolved the interfaces and chains the nodes reported (per outcome and naming scheme).
A scrape reads these from :meth:`DatastoreCache.status` and
:meth:`Catalog.resolution_stats`, both safe to call from the scrape's thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator.catalog.outcomes import ResolutionStats
from aggregator.datastore.cache import DatastoreCache, DatastoreStatus
from aggregator.metrics.selfmon import SimpleMetric

__all__ = ["DatastoreCollector", "datastore_metrics"]

_PREFIX = "calico_accountant_datastore_"


def _one(name: str, kind: Literal["counter", "gauge"], text: str, value: float) -> SimpleMetric:
    return SimpleMetric(_PREFIX + name, kind, text, (), (((), float(value)),))


def datastore_metrics(status: DatastoreStatus, stats: ResolutionStats) -> list[SimpleMetric]:
    """The datastore self-metrics of one moment (pure)."""
    outcomes = (
        ("workload", "resolved", stats.workloads_resolved),
        ("workload", "unresolved", stats.workloads_unresolved),
        ("policy", "resolved", stats.policies_resolved),
        ("policy", "by_comment", stats.policies_by_comment),
        ("policy", "comment_mismatch", stats.comment_mismatches),
        ("policy", "ambiguous", stats.policies_ambiguous),
        ("policy", "unresolved", stats.policies_unresolved),
        ("profile", "resolved", stats.profiles_resolved),
        ("profile", "unresolved", stats.profiles_unresolved),
    )
    sizes = (
        ("workloads", stats.workloads),
        ("policies", stats.policies),
        ("staged_policies", stats.staged_policies),
        ("profiles", stats.profiles),
        ("tiers", stats.tiers),
        ("host_endpoints", stats.host_endpoints),
    )
    return [
        _one(
            "synced",
            "gauge",
            "1 once the datastore's first complete listing was applied; until then names stay raw.",
            float(status.synced),
        ),
        _one(
            "revision", "gauge", "The datastore revision the catalog reflects (0 for files).", status.revision
        ),
        _one(
            "catalog_builds_total",
            "counter",
            "Catalogs built from the datastore since start.",
            status.generation,
        ),
        _one(
            "catalog_build_seconds",
            "gauge",
            "How long building the current catalog took.",
            status.catalog_build_seconds,
        ),
        _one(
            "changes_total",
            "counter",
            "Datastore changes (puts and deletes) applied.",
            status.changes_applied,
        ),
        _one(
            "relists_total",
            "counter",
            "Full listings after the first (etcd compaction, or a listing that broke).",
            status.relists,
        ),
        _one(
            "reconnects_total",
            "counter",
            "Times the datastore source lost its connection or watch and started again.",
            status.reconnects,
        ),
        SimpleMetric(
            _PREFIX + "bad_objects_total",
            "counter",
            "Datastore values skipped because they could not be used, per reason (not_json, bad_spec, ...).",
            ("reason",),
            tuple(((reason,), float(count)) for reason, count in sorted(status.bad_values.items())),
        ),
        SimpleMetric(
            _PREFIX + "objects",
            "gauge",
            "Datastore objects the current catalog was built from, per kind.",
            ("kind",),
            tuple(((kind,), float(count)) for kind, count in sorted(status.objects.items())),
        ),
        SimpleMetric(
            _PREFIX + "catalog_entries",
            "gauge",
            "What the current catalog knows: workloads, policies (staged ones included), staged "
            "policies, profiles, tiers, host endpoints (node interfaces a HostEndpoint names).",
            ("what",),
            tuple(((what,), float(count)) for what, count in sizes),
        ),
        _one(
            "duplicate_interfaces",
            "gauge",
            "(node, interface) pairs claimed by several WorkloadEndpoints (the newest wins).",
            stats.duplicate_interfaces,
        ),
        SimpleMetric(
            _PREFIX + "resolutions",
            "gauge",
            "Distinct interfaces and chains the current catalog was asked about, by what was asked and "
            "how it was answered (resolved, unresolved; for policies also by_comment, comment_mismatch, "
            "ambiguous).",
            ("what", "outcome"),
            tuple(((what, outcome), float(count)) for what, outcome, count in outcomes),
        ),
        SimpleMetric(
            _PREFIX + "resolved_chains",
            "gauge",
            "Policy chains the current catalog resolved, per felix naming scheme that produced them.",
            ("scheme",),
            tuple(((scheme,), float(count)) for scheme, count in stats.schemes),
        ),
    ]


class DatastoreCollector(Collector):
    """The datastore self-metrics of a cache, for the aggregator's process registry."""

    def __init__(self, cache: DatastoreCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        for metric in datastore_metrics(self._cache.status(), self._cache.catalog.resolution_stats()):
            family: Metric
            if metric.type == "counter":
                family = CounterMetricFamily(
                    metric.name.removesuffix("_total"), metric.help, labels=metric.labels
                )
            else:
                family = GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
            for labels, value in metric.samples:
                family.add_metric(list(labels), value)
            yield family
