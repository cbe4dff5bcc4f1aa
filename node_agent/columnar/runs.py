"""Stage 2 of the columnar parse: the chains as runs of consecutive rules.

``iptables-save`` prints each chain's rules together, so a chain is a run (first slot,
length) and per-rule facts that depend only on the chain (is it an endpoint's, its
direction and interface, where it ends) are per-run values expanded to one per slot
C-level, instead of being looked up line by line.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from calico_accountant.felix.endpoints import ENDPOINT_PREFIXES, endpoint_chain
from calico_accountant.records import Direction, EndpointKind
from node_agent.columnar.rows import Irregular, Rows

__all__ = ["Runs", "chain_runs"]

_T = TypeVar("_T")


@dataclass(slots=True)
class Runs:
    """The chains of a table in order, one entry per run, then per-slot expansions."""

    names: list[str]
    starts: list[int]
    ends: list[int]
    lengths: list[int]
    endpoint: list[bool]
    """Whether the run is an endpoint's chain (workload ``cali-tw-``/``cali-fw-``, host
    ``cali-th-``/``cali-fh-``/``cali-thfw-``/``cali-fhfw-``)."""
    present: set[str]
    """Chains in the dump: with rules, or only declared (an empty policy)."""
    end_of: list[int]
    """Per slot: the end (one past the last slot) of its chain."""
    direction_of: list[Direction | None]
    """Per slot: its endpoint chain's direction (None outside endpoint chains)."""
    interface_of: list[str]
    """Per slot: its endpoint chain's interface ("" outside endpoint chains)."""
    endpoint_of: list[EndpointKind]
    """Per slot: whose endpoint chain it is in (:attr:`EndpointKind.WORKLOAD` outside them)."""

    @property
    def endpoint_runs(self) -> list[int]:
        return list(itertools.compress(range(len(self.names)), self.endpoint))


def chain_runs(rows: Rows) -> Runs:
    """The runs of ``rows``' chains; :class:`Irregular` unless every chain is one run of a
    plain, declared name (interleaved chains are the general path's business)."""
    names: list[str] = []
    lengths: list[int] = []
    for name, group in itertools.groupby(rows.chains):
        names.append(name)
        lengths.append(len(list(group)))
    distinct = set(names)
    if len(distinct) != len(names):
        raise Irregular
    declared = rows.declared
    # Per name, C-level (a node with thousands of policies has ~7k chains): no escapes or
    # quotes, no leading "-", declared (when any are), not an endpoint chain without an
    # interface (a bare prefix).
    joined = "".join(names)
    if "\\" in joined or "'" in joined or '"' in joined:
        raise Irregular
    if any(map(str.startswith, names, itertools.repeat("-"))):
        raise Irregular
    if (declared and not declared.issuperset(names)) or not ENDPOINT_PREFIXES.keys().isdisjoint(names):
        raise Irregular
    ends = list(itertools.accumulate(lengths))
    starts = [end - length for end, length in zip(ends, lengths, strict=True)]

    found = [endpoint_chain(name) for name in names]
    endpoint = [chain is not None for chain in found]
    directions = [chain.direction if chain is not None else None for chain in found]
    interfaces = [chain.interface if chain is not None else "" for chain in found]
    kinds = [chain.endpoint if chain is not None else EndpointKind.WORKLOAD for chain in found]
    return Runs(
        names,
        starts,
        ends,
        lengths,
        endpoint,
        distinct | declared,
        _expand(ends, lengths),
        _expand(directions, lengths),
        _expand(interfaces, lengths),
        _expand(kinds, lengths),
    )


def _expand(values: Sequence[_T], lengths: Sequence[int]) -> list[_T]:
    """One value per run to one per slot."""
    return list(itertools.chain.from_iterable(map(itertools.repeat, values, lengths)))
