"""An :class:`AuditReport` as JSON (one object, a list per section), or as sections of rows
printed as aligned text (``table``) or Markdown tables (``markdown``)."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from calico_accountant_cli.audit.model import AuditReport, PolicyKey, RuleKey

__all__ = ["OutputFormat", "Section", "format_report", "report_json", "sections"]


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


def _policy(key: PolicyKey) -> dict[str, Any]:
    return {"tier": key.tier, "policy_kind": key.kind, "policy_namespace": key.namespace, "policy": key.name}


def _rule(key: RuleKey) -> dict[str, Any]:
    return {**_policy(key.policy), "direction": key.direction, "rule": key.rule}


def report_json(report: AuditReport) -> dict[str, Any]:
    """The JSON document: ``window``, ``source``, ``notes`` and one list per section."""
    return {
        "window": report.window,
        "source": report.source,
        "notes": list(report.notes),
        "canaries": [
            {
                **_policy(c.policy),
                "status": c.status.value,
                "namespace": c.namespace,
                "app": c.app,
                "packets": c.packets,
            }
            for c in report.canaries
        ],
        "unused_policies": [{**_policy(u.policy), "reason": u.reason.value} for u in report.unused_policies],
        "unused_rules": [
            {
                **_rule(u.rule),
                "reason": u.reason.value,
                "action": u.info.action if u.info else "",
                "protocol": u.info.protocol if u.info else "",
                "ports": u.info.ports if u.info else "",
                "source": u.info.source if u.info else "",
                "destination": u.info.destination if u.info else "",
            }
            for u in report.unused_rules
        ],
        "default_deny": [
            {
                **_policy(PolicyKey(d.tier, "", "", "")),
                "namespace": d.namespace,
                "app": d.app,
                "direction": d.direction,
                "packets": d.packets,
                "policies": [_policy(p) for p in d.policies],
            }
            for d in report.default_deny
        ],
        "denies": [
            {
                **_policy(d.policy),
                "scope": d.scope.value,
                "direction": d.direction,
                "rule": d.rule,
                "namespace": d.namespace,
                "packets": d.packets,
            }
            for d in report.denies
        ],
        "changes": [
            {
                **_policy(c.policy),
                "packets": c.packets,
                "previous_packets": c.previous_packets,
                "fall": round(c.fall, 4),
            }
            for c in report.changes
        ],
    }


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _name(key: PolicyKey) -> str:
    return f"{key.namespace}/{key.name}" if key.namespace else key.name


def _workload(namespace: str, app: str) -> str:
    return f"{namespace}/{app}" if namespace or app else ""


def sections(report: AuditReport) -> list[Section]:
    """The report's sections as titled rows (the same for text and Markdown)."""
    policy_columns = ("TIER", "KIND", "POLICY")

    def policy(key: PolicyKey) -> tuple[str, str, str]:
        return (key.tier, key.kind, _name(key))

    return [
        Section(
            "Canary coverage",
            (*policy_columns, "STATUS", "WORKLOADS", "PACKETS"),
            tuple(
                (*policy(c.policy), c.status.value, _workload(c.namespace, c.app), str(c.packets))
                for c in report.canaries
            ),
        ),
        Section(
            "Unused policies",
            (*policy_columns, "REASON"),
            tuple((*policy(u.policy), u.reason.value) for u in report.unused_policies),
        ),
        Section(
            "Unused rules",
            (*policy_columns, "DIRECTION", "RULE", "REASON", "WHAT IT SAYS"),
            tuple(
                (
                    *policy(u.rule.policy),
                    u.rule.direction,
                    str(u.rule.rule),
                    u.reason.value,
                    u.info.describe() if u.info else "",
                )
                for u in report.unused_rules
            ),
        ),
        Section(
            "Default-deny drops",
            ("TIER", "WORKLOADS", "DIRECTION", "PACKETS", "SELECTED BY"),
            tuple(
                (
                    d.tier,
                    _workload(d.namespace, d.app),
                    d.direction,
                    str(d.packets),
                    ", ".join(_name(p) for p in d.policies) or "(none)",
                )
                for d in report.default_deny
            ),
        ),
        Section(
            "Top denies",
            ("SCOPE", *policy_columns, "RULE", "PACKETS"),
            tuple(
                (
                    d.scope.value if not d.namespace else f"namespace {d.namespace}",
                    *policy(d.policy),
                    "" if d.rule is None else f"{d.direction} {d.rule}",
                    str(d.packets),
                )
                for d in report.denies
            ),
        ),
        Section(
            "Changes",
            (*policy_columns, "ACCEPTED", "BEFORE", "FALL"),
            tuple(
                (*policy(c.policy), str(c.packets), str(c.previous_packets), f"{c.fall:.0%}")
                for c in report.changes
            ),
        ),
    ]


def _text_table(section: Section) -> list[str]:
    lines = [f"== {section.title} ({len(section.rows)})"]
    if not section.rows:
        return [*lines, "(nothing)", ""]
    widths = [
        max(len(row[i]) for row in (section.columns, *section.rows)) for i in range(len(section.columns))
    ]
    for row in (section.columns, *section.rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return [*lines, ""]


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|") or " "


def _markdown_table(section: Section) -> list[str]:
    lines = [f"## {section.title} ({len(section.rows)})", ""]
    if not section.rows:
        return [*lines, "Nothing found.", ""]
    lines.append("| " + " | ".join(section.columns) + " |")
    lines.append("|" + "---|" * len(section.columns))
    lines += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in section.rows]
    return [*lines, ""]


def format_report(report: AuditReport, output: OutputFormat) -> str:
    if output is OutputFormat.JSON:
        return json.dumps(report_json(report), indent=2)
    header: Sequence[str]
    if output is OutputFormat.MARKDOWN:
        header = [f"# Policy audit: {report.source}, window {report.window}", ""]
        header += [f"> {note}" for note in report.notes] + ([""] if report.notes else [])
        render = _markdown_table
    else:
        header = [f"Policy audit: {report.source}, window {report.window}"]
        header += [f"note: {note}" for note in report.notes]
        header += [""]
        render = _text_table
    lines = list(header)
    for section in sections(report):
        lines += render(section)
    return "\n".join(lines).rstrip() + "\n"
