"""What the aggregator exports: levels, a label allow-list, a cap on series (the flags).

Labels not allowed are dropped from the workload/node/cluster families and the series
that then coincide are summed; the compatibility (monzo) families keep their shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregator.metrics import FAMILIES, Level, SeriesFamily

__all__ = ["DEFAULT_LEVELS", "LEVEL_CHOICES", "SeriesOptions", "parse_labels", "parse_levels"]

DEFAULT_LEVELS: frozenset[Level] = frozenset({Level.WORKLOAD, Level.NODE, Level.CLUSTER})


@dataclass(frozen=True, slots=True)
class SeriesOptions:
    """What is exported."""

    levels: frozenset[Level] = DEFAULT_LEVELS
    compat: bool = False
    """Also export the monzo/calico-accountant names (per workload)."""
    allowed_labels: frozenset[str] | None = None
    """Labels kept on the workload/node/cluster families; None keeps all.  The
    compatibility families keep their historic shape regardless."""
    max_series: int | None = None
    """At most this many label sets in all counter families together; None: no cap."""

    def exports(self, family: SeriesFamily) -> bool:
        if family.level is Level.COMPAT:
            return self.compat
        return family.level in self.levels


LEVEL_CHOICES = (Level.WORKLOAD, Level.APP, Level.NODE, Level.CLUSTER)
"""What ``--levels`` accepts (the compatibility names have their own flag)."""


def parse_levels(text: str) -> frozenset[Level]:
    """``workload,app,node,cluster`` (any subset, comma separated) as levels; ValueError if unknown."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    allowed = {level.value: level for level in LEVEL_CHOICES}
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        choices = ",".join(allowed)
        raise ValueError(f"levels must be a comma-separated subset of {choices}, got {text!r}")
    return frozenset(allowed[name] for name in names)


def parse_labels(text: str) -> frozenset[str]:
    """A comma-separated label allow-list; ValueError for names no family has."""
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    known = {label for family in FAMILIES if family.level is not Level.COMPAT for label in family.labels}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(f"unknown labels {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return names
