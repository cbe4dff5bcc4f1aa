"""The demo's live one-screen summary, from the aggregator's policy-hit API.

:func:`fetch_summary` asks the running aggregator (``Snapshot``, ``ServerStatus``,
``ListNodes``) -- the same API ``top`` and ``nodes`` use -- so the screen shows what
the system computed, not what the demo sent.  :func:`render_summary` is pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant_cli.hit_format import policy_text, workload_text
from calico_accountant_cli.hits_client import HitsClient

__all__ = ["NodeLine", "Summary", "fetch_summary", "render_summary"]

_WORKLOAD_KINDS = (
    spb.POLICY_ACCEPT,
    spb.POLICY_DENY,
    spb.NO_POLICY_DROP,
    spb.PROFILE_ACCEPT,
    spb.NO_PROFILE_DROP,
    spb.ENDPOINT_ADMIN_DROP,
)


@dataclass(frozen=True, slots=True)
class NodeLine:
    node: str
    connected: bool
    stale: bool
    sequence: int


@dataclass(frozen=True, slots=True)
class Summary:
    agents_connected: int
    nodes: tuple[NodeLine, ...]
    accepted_packets: int
    denied_packets: int
    top_denied_workloads: tuple[tuple[str, int], ...]
    top_denied_policies: tuple[tuple[str, int], ...]
    top_accepting_policies: tuple[tuple[str, int], ...]


def _top(counter: Counter[str], limit: int) -> tuple[tuple[str, int], ...]:
    nonzero = [item for item in counter.items() if item[1] > 0]
    return tuple(sorted(nonzero, key=lambda item: (-item[1], item[0]))[:limit])


def summarize(
    totals: Sequence[hpb.Hit], status: hpb.ServerStatusResponse, nodes: hpb.ListNodesResponse, limit: int = 5
) -> Summary:
    """Aggregate per-workload totals into the screen's figures (pure)."""
    denied_workloads: Counter[str] = Counter()
    denied_policies: Counter[str] = Counter()
    accepting: Counter[str] = Counter()
    accepted = denied = 0
    for hit in totals:
        if hit.kind not in _WORKLOAD_KINDS or not hit.pod:
            continue  # per-rule totals are per node; the workload totals already count these packets
        if hit.verdict == "deny":
            denied += hit.packets
            denied_workloads[workload_text(hit)] += hit.packets
            label = policy_text(hit)
            if hit.kind == spb.NO_POLICY_DROP:
                label = "(default deny: no policy matched)"
            denied_policies[label] += hit.packets
        elif hit.verdict == "accept":
            accepted += hit.packets
            if hit.kind == spb.POLICY_ACCEPT:
                accepting[policy_text(hit)] += hit.packets
    lines = tuple(
        NodeLine(n.node, n.connected, n.stale, n.sequence) for n in sorted(nodes.nodes, key=lambda n: n.node)
    )
    return Summary(
        agents_connected=status.agents_connected,
        nodes=lines,
        accepted_packets=accepted,
        denied_packets=denied,
        top_denied_workloads=_top(denied_workloads, limit),
        top_denied_policies=_top(denied_policies, limit),
        top_accepting_policies=_top(accepting, limit),
    )


def fetch_summary(client: HitsClient, limit: int = 5) -> Summary:
    """One round of API calls to the aggregator."""
    status = client.server_status()
    nodes = client.list_nodes()
    totals = client.snapshot(hpb.HitFilter()).totals
    return summarize(list(totals), status, nodes, limit)


def _table(title: str, rows: Sequence[tuple[str, int]], width: int) -> list[str]:
    out = [title]
    if not rows:
        out.append("  (nothing yet)")
    for name, packets in rows:
        out.append(f"  {packets:>9}  {name[: width - 14]}")
    return out


def render_summary(
    summary: Summary, *, header: Sequence[str] = (), elapsed: float | None = None, width: int = 100
) -> str:
    """The screen as text (no terminal control codes)."""
    lines = list(header)
    if elapsed is not None:
        lines.append(f"running for {elapsed:.0f}s")
    nodes = ", ".join(
        f"{n.node} ({'connected' if n.connected else 'disconnected'}{', stale' if n.stale else ''}, "
        f"snapshot #{n.sequence})"
        for n in summary.nodes
    )
    lines.append(f"agents connected: {summary.agents_connected}   nodes: {nodes or '(none yet)'}")
    lines.append(
        f"new-flow packets decided: {summary.accepted_packets} accepted, {summary.denied_packets} denied"
    )
    lines.append("")
    lines += _table("top denied workloads (packets)", summary.top_denied_workloads, width)
    lines += _table("top denying policies (packets)", summary.top_denied_policies, width)
    lines += _table("top accepting policies (packets)", summary.top_accepting_policies, width)
    return "\n".join(lines)
