"""``calico_accountant_ingest_*``: what the agents sent, and what was refused and why."""

from __future__ import annotations

import enum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["IngestMetrics", "RejectReason"]


class RejectReason(enum.StrEnum):
    """The ``reason`` label of ``calico_accountant_ingest_rejected_total``."""

    IDENTITY = "identity"
    """The caller may not report for the node it named (or for any node)."""
    MALFORMED = "malformed"
    """A message or snapshot that does not follow the wire contract."""
    LIMIT = "limit"
    """Over a cap: streams, streams per peer, pending bytes, nodes, counters, codes."""
    SEQUENCE = "sequence"
    """Out of order for its agent instance; a full resync was asked for."""
    KEY_IDS = "key_ids"
    """Values or removals by a key id the aggregator does not hold, or an id defined again
    for another key (:mod:`aggregator.ledger.keyed`); a full resync was asked for."""


class IngestMetrics:
    """The ingest self-metrics, on the registry the server exposes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.snapshots = Counter(
            "calico_accountant_ingest_snapshots",
            "Whole snapshots received, by type (full, delta) and outcome (applied, resync, error).",
            ["type", "outcome"],
            registry=registry,
        )
        self.messages = Counter(
            "calico_accountant_ingest_messages",
            "Ingest messages (chunks included) received.",
            registry=registry,
        )
        self.counters = Counter(
            "calico_accountant_ingest_counters_applied", "Counters applied from snapshots.", registry=registry
        )
        self.invalid_counters = Counter(
            "calico_accountant_ingest_invalid_counters",
            "Counters skipped because they did not validate (see the aggregator log for why).",
            registry=registry,
        )
        self.rejected = Counter(
            "calico_accountant_ingest_rejected",
            "Ingest messages, snapshots or streams refused, by reason: identity (the caller may not report "
            "for that node), malformed, limit (a cap was reached), sequence (a full resync was asked for), "
            "key_ids (values by a key id it does not hold; a full resync was asked for).",
            ["reason"],
            registry=registry,
        )
        for reason in RejectReason:
            self.rejected.labels(reason.value)
        self.stream_errors = Counter(
            "calico_accountant_ingest_stream_errors",
            "Ingest streams ended by the aggregator, by gRPC status code.",
            ["code"],
            registry=registry,
        )
        self.streams = Gauge("calico_accountant_ingest_streams", "Open ingest streams.", registry=registry)
        self.pending_bytes = Gauge(
            "calico_accountant_ingest_pending_bytes",
            "Bytes of snapshots whose chunks have not all arrived yet, over all streams.",
            registry=registry,
        )
        self.queued = Gauge(
            "calico_accountant_ingest_queued_snapshots",
            "Full snapshots waiting for their turn to be decoded and applied (they take turns).",
            registry=registry,
        )
        self.waiting_acks = Counter(
            "calico_accountant_ingest_waiting_acks",
            "Interim acks sent to agents whose snapshot waited or was being applied.",
            registry=registry,
        )
        self.held_acks = Counter(
            "calico_accountant_ingest_held_acks",
            "Acks of applied deltas held back while full snapshots waited their turn (the agent's "
            "reads of that time then come as one delta).",
            registry=registry,
        )
        self.held_seconds = Counter(
            "calico_accountant_ingest_held_ack_seconds",
            "Seconds acks of applied deltas were held back, summed.",
            registry=registry,
        )
        self.apply_seconds = Histogram(
            "calico_accountant_ingest_apply_seconds",
            "Time to apply one whole snapshot to the totals and series.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
