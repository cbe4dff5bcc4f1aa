"""Reading PromQL and promtool test files enough to check them against an exposition: which
series names a query uses, and what an input series of a promtool test is made of."""

from __future__ import annotations

import re

__all__ = ["metric_names", "parse_series"]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_DURATION = re.compile(r"\[[^\]]*\]")
_TOKEN = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()")
_LABEL_VALUES = re.compile(r"\blabel_values\(\s*([^,()]+?)\s*(?:,[^)]*)?\)")
"""Grafana's ``label_values(series, label)`` variable query: only its first argument is a series."""
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
}
_SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def metric_names(expr: str) -> set[str]:
    """The series names (and recording-rule names) ``expr`` selects: every identifier that is
    not a function, a keyword, a label inside braces or a grouping list, or in a string."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _LABEL_VALUES.sub(r"\1", text)
    text = _DURATION.sub("", text)
    text = _GROUPING.sub("", text)
    return {t for t in _TOKEN.findall(text) if t not in _KEYWORDS and not t.startswith("__")}


def parse_series(series: str) -> tuple[str, dict[str, str]]:
    """``name{a="x",b="y"}`` as (name, labels)."""
    match = _SERIES.match(series.strip())
    if match is None:
        raise ValueError(f"not a series: {series!r}")
    body = match.group(2)
    labels = dict(_LABEL.findall(body))
    if _LABEL.sub("", body).strip():
        raise ValueError(f"cannot read the labels of {series!r}")
    return match.group(1), labels
