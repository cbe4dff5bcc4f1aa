"""A series' label set as it appears in the Prometheus text format: ``{name="value",...}``.

Made once, when a series is created (:class:`~aggregator.series.state.SeriesState` keeps it
beside the series' value), never per scrape: a large cluster exports a million series, and
escaping and joining their labels was the largest part of a scrape, first when every
scrape made them and then when a scrape looked each one up by its label tuple (hashing a
tuple of eight strings, ~250 ns, is not cached by Python: 0.23 s per 880k series).
"""

from __future__ import annotations

import re

__all__ = ["escape_label_value", "label_text"]


def escape_label_value(value: str) -> str:
    """``value`` escaped for a quoted label value (backslash, double quote, line feed)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def label_text(names: tuple[str, ...], labels: tuple[str, ...]) -> str:
    """``{name="value",...}`` in ``names``' order; empty without labels.  Values are escaped
    one by one only when one of them needs it (one search over them all, in C: escaping each
    was ~40 % of making a series' text, and every new workload series makes one)."""
    if not names:
        return ""
    if _NEEDS_ESCAPING.search("".join(labels)) is None:
        pairs = [f'{n}="{v}"' for n, v in zip(names, labels, strict=True)]
    else:
        pairs = [f'{n}="{escape_label_value(v)}"' for n, v in zip(names, labels, strict=True)]
    return "{" + ",".join(pairs) + "}"


_NEEDS_ESCAPING = re.compile(r'[\\"\n]')
"""What :func:`escape_label_value` escapes."""
