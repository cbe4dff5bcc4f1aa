"""The aggregator's own metrics: is every node reporting, and can its counters be trusted?

Computed from a :class:`~aggregator.series.views.StateView` at scrape time; there are only a
handful per node, so nothing is pre-rendered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from aggregator.series.views import StateView
from calico_accountant.runtime.build_info import BuildInfo, build_info

__all__ = ["SimpleMetric", "self_metrics"]


@dataclass(frozen=True, slots=True)
class SimpleMetric:
    """A small metric family: name, type, help, label names and (label values, value) samples."""

    name: str
    type: Literal["counter", "gauge"]
    help: str
    labels: tuple[str, ...]
    samples: tuple[tuple[tuple[str, ...], float], ...]


def _per_node(
    view: StateView, pick: Iterable[tuple[str, float]]
) -> tuple[tuple[tuple[str, ...], float], ...]:
    return tuple(((node,), value) for node, value in pick)


def self_metrics(view: StateView, version: str) -> list[SimpleMetric]:
    nodes = view.nodes
    build = build_info()
    metrics = [
        SimpleMetric(
            "calico_accountant_build_info",
            "gauge",
            "Always 1; the labels say which calico-accountant aggregator build is running.",
            BuildInfo.LABELS,
            (((version, build.revision, build.python_version), 1.0),),
        ),
        SimpleMetric(
            "calico_accountant_agents_connected",
            "gauge",
            "Node agents with an open snapshot stream right now.",
            (),
            (((), float(sum(1 for n in nodes if n.connected))),),
        ),
        SimpleMetric(
            "calico_accountant_node_connected",
            "gauge",
            "1 while the node's agent has an open snapshot stream, else 0.",
            ("node",),
            _per_node(view, ((n.node, float(n.connected)) for n in nodes)),
        ),
        SimpleMetric(
            "calico_accountant_node_stale",
            "gauge",
            "1 when no snapshot arrived from the node within the stale timeout: its series are not moving "
            "because nobody reports them, not because there is no traffic.",
            ("node",),
            _per_node(view, ((n.node, float(n.stale)) for n in nodes)),
        ),
        SimpleMetric(
            "calico_accountant_node_last_snapshot_timestamp_seconds",
            "gauge",
            "When the node's agent read the tables of the last applied snapshot (Unix time).",
            ("node",),
            _per_node(view, ((n.node, n.read_time) for n in nodes)),
        ),
        SimpleMetric(
            "calico_accountant_node_snapshot_sequence",
            "gauge",
            "Sequence number of the last applied snapshot within the current agent instance.",
            ("node",),
            _per_node(view, ((n.node, float(n.sequence)) for n in nodes)),
        ),
        SimpleMetric(
            "calico_accountant_node_parse_diagnostics_total",
            "counter",
            "Problems the node's agent met parsing its tables, per diagnostic code (garbled_line, "
            "bad_counter, deny_not_exact, ...): records it could not produce exactly.",
            ("node", "code"),
            tuple(
                ((n.node, code), float(v)) for n in nodes for code, v in sorted(n.diagnostic_totals.items())
            ),
        ),
        SimpleMetric(
            "calico_accountant_node_counter_resets_total",
            "counter",
            "Raw counters that restarted (reason=decreased or rules_rewritten: the new raw value was "
            "counted) or could not be differenced exactly (reason=inexact: the interval was skipped).",
            ("node", "reason"),
            tuple(((n.node, reason), float(v)) for n in nodes for reason, v in sorted(n.resets.items())),
        ),
        SimpleMetric(
            "calico_accountant_node_inexact_resets_total",
            "counter",
            "Derived deny counters whose rules were partly rewritten: the packets of that interval are "
            "missing from the totals (never counted twice).",
            ("node",),
            _per_node(view, ((n.node, float(n.resets.get("inexact", 0))) for n in nodes)),
        ),
        SimpleMetric(
            "calico_accountant_node_sequence_gaps_total",
            "counter",
            "Delta snapshots that did not follow the previous sequence number.",
            ("node",),
            _per_node(view, ((n.node, float(n.sequence_gaps)) for n in nodes)),
        ),
        SimpleMetric(
            "calico_accountant_node_out_of_order_snapshots_total",
            "counter",
            "Snapshots ignored because they were not newer than the last applied one.",
            ("node",),
            _per_node(view, ((n.node, float(n.out_of_order)) for n in nodes)),
        ),
        SimpleMetric(
            "calico_accountant_node_invalid_counters_total",
            "counter",
            "Counters in the node's snapshots that did not validate and were skipped.",
            ("node",),
            _per_node(view, ((n.node, float(n.invalid_counters)) for n in nodes)),
        ),
        SimpleMetric(
            "calico_accountant_node_counters",
            "gauge",
            "Counters the aggregator tracks for the node: live ones, and retired ones (gone from the "
            "node, kept in the sums, per-workload series removed after the grace period).",
            ("node", "state"),
            tuple(
                ((n.node, state), float(v))
                for n in nodes
                for state, v in (("live", n.counters_live), ("retired", n.counters_retired))
            ),
        ),
        SimpleMetric(
            "calico_accountant_unresolved_interfaces",
            "gauge",
            "Workload interfaces on the node the datastore does not know; exported with pod=<interface> "
            "and an empty namespace.",
            ("node",),
            _per_node(view, ((n.node, float(n.unresolved_interfaces)) for n in nodes)),
        ),
        SimpleMetric(
            "calico_accountant_unresolved_chains",
            "gauge",
            "Policy, group member or profile chains on the node the datastore does not explain; exported "
            "with policy_kind=Unresolved and the raw chain name.",
            ("node",),
            _per_node(view, ((n.node, float(n.unresolved_chains)) for n in nodes)),
        ),
        SimpleMetric(
            "calico_accountant_series",
            "gauge",
            "Label sets currently exported in the policy counter families (each one is a packets and, "
            "except for compatibility names, a bytes series).",
            (),
            (((), float(view.series_count)),),
        ),
        SimpleMetric(
            "calico_accountant_series_overflow_total",
            "counter",
            "Label sets not exported because the series cap was reached, per level of the refused "
            "series (each counted once); raise the cap or drop labels with the allow-list.",
            ("level",),
            tuple(
                ((level,), float(view.overflow.get(level, 0)))
                for level in sorted({f.family.level.value for f in view.families} | set(view.overflow))
            ),
        ),
        SimpleMetric(
            "calico_accountant_resolution_errors_total",
            "counter",
            "Lookups in the datastore catalog that failed; the counter was exported with raw names.",
            (),
            (((), float(view.resolution_errors)),),
        ),
        SimpleMetric(
            "calico_accountant_expired_counters_total",
            "counter",
            "Retired counters forgotten after the grace period (their totals stay in node and cluster sums).",
            (),
            (((), float(view.expired_counters)),),
        ),
        SimpleMetric(
            "calico_accountant_forgotten_nodes_total",
            "counter",
            "Nodes forgotten after --node-expiry without a stream or a snapshot: their series left, their "
            "counts stay in the cluster sums.",
            (),
            (((), float(view.forgotten_nodes)),),
        ),
        SimpleMetric(
            "calico_accountant_catalog_changes_total",
            "counter",
            "Datastore catalog changes applied to the series (and full rebuilds).",
            (),
            (((), float(view.rebuilds)),),
        ),
        SimpleMetric(
            "calico_accountant_moved_counters_total",
            "counter",
            "Counters whose pod or policy names changed with the catalog, moved with their totals to "
            "their new series.",
            (),
            (((), float(view.moved_counters)),),
        ),
    ]
    return metrics
