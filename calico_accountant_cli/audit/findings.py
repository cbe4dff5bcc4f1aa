"""Which findings make ``audit`` fail (exit status 1): the ``--fail-on`` categories.

Exit status: 0 when no finding of a ``--fail-on`` category was found, 1 when one was, 2 for
usage or connection errors (decided by the command, not here).
"""

from __future__ import annotations

import enum

from calico_accountant_cli.audit.model import AuditReport, CanaryStatus

__all__ = ["Category", "FailOnError", "counts", "fails", "parse_fail_on"]


class Category(enum.StrEnum):
    CANARY_HIT = "canary-hit"
    """A canary accepted traffic."""
    CANARY_MISSING = "canary-missing"
    """A canary is not rendered on any node, or ``--canary`` names no known policy."""
    UNUSED_POLICY = "unused-policy"
    UNUSED_RULE = "unused-rule"
    DEFAULT_DENY = "default-deny"
    DENY = "deny"
    CHANGE = "change"


class FailOnError(ValueError):
    """A ``--fail-on`` value that names no category."""


def parse_fail_on(text: str) -> frozenset[Category]:
    """``all`` (the default: any finding fails), ``none``, or a comma-separated list."""
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if words == ["all"]:
        return frozenset(Category)
    if words in ([], ["none"]):
        return frozenset()
    known = {c.value: c for c in Category}
    unknown = [w for w in words if w not in known]
    if unknown:
        raise FailOnError(
            f"--fail-on: unknown {', '.join(unknown)}; use all, none or any of {', '.join(known)}"
        )
    return frozenset(known[w] for w in words)


def counts(report: AuditReport) -> dict[Category, int]:
    """How many entries of each category the report holds."""
    return {
        Category.CANARY_HIT: sum(1 for c in report.canaries if c.status is CanaryStatus.HIT),
        Category.CANARY_MISSING: sum(
            1 for c in report.canaries if c.status in (CanaryStatus.NOT_RENDERED, CanaryStatus.NOT_FOUND)
        ),
        Category.UNUSED_POLICY: len(report.unused_policies),
        Category.UNUSED_RULE: len(report.unused_rules),
        Category.DEFAULT_DENY: len(report.default_deny),
        Category.DENY: len(report.denies),
        Category.CHANGE: len(report.changes),
    }


def fails(report: AuditReport, fail_on: frozenset[Category]) -> bool:
    found = counts(report)
    return any(found[category] for category in fail_on)
