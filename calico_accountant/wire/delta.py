"""What changed between two reads of a node: the agent sends only that after a full snapshot."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from calico_accountant.records import CounterKey, CounterRecord

__all__ = ["Delta", "compute_delta", "index_records"]


@dataclass(frozen=True, slots=True)
class Delta:
    """What changed between two reads of a node: counters whose value or evidence
    changed (or are new), and keys that vanished."""

    changed: tuple[CounterRecord, ...]
    removed: tuple[CounterKey, ...]

    @property
    def empty(self) -> bool:
        return not self.changed and not self.removed


def index_records(records: Iterable[CounterRecord]) -> dict[CounterKey, CounterRecord]:
    """Records by key (a later duplicate wins, as it would on the aggregator)."""
    return {record.key: record for record in records}


def compute_delta(
    previous: Mapping[CounterKey, CounterRecord], current: Mapping[CounterKey, CounterRecord]
) -> Delta:
    """Counters of ``current`` that differ from ``previous`` in any field (value,
    rule ids, comment, members) or are new, and keys of ``previous`` gone from
    ``current``.  Values are absolute, so applying a delta twice is harmless."""
    # The agent's usual case: the same keys in the same order (the steady-state parser
    # keeps its plan), the records of unmoved counters the very same objects.  One C-level
    # pass then does it, without hashing 100k keys twice.
    if len(previous) == len(current) and list(previous) == list(current):
        current_records = list(current.values())
        moved = map(operator.ne, previous.values(), current_records)
        return Delta(changed=tuple(itertools.compress(current_records, moved)), removed=())
    changed = tuple(record for key, record in current.items() if previous.get(key) != record)
    removed = tuple(key for key in previous if key not in current)
    return Delta(changed=changed, removed=removed)
