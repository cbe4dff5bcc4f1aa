"""The Prometheus text format (0.0.4) of a :class:`~aggregator.series.views.StateView`.

Written directly rather than through prometheus_client's metric objects: a cluster has
hundreds of thousands of series, and formatting them through per-sample objects costs
several times more.  Writing the text ourselves also keeps the compatibility names
(``no_policy_drop_counter``, ...) exactly as monzo/calico-accountant typed them:
``counter`` without ``_total``, which prometheus_client refuses to type.

The input is a copy taken under the accountant's lock (:meth:`Accountant.view`), so a
scrape blocks ingest only for the copy, never for the formatting.
"""

from __future__ import annotations

import time
from typing import cast

from aggregator.accountant import Accountant
from aggregator.metrics.selfmon import SimpleMetric, self_metrics
from aggregator.series.views import FamilyView, StateView
from calico_accountant import __version__

__all__ = ["CONTENT_TYPE", "LabelTexts", "render_accountant", "render_text"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class LabelTexts:
    """Each series' ``{name="value",...}`` text, kept from one scrape to the next.

    A series' labels never change, and escaping and joining them is most of what a scrape
    costs, so the text is made once per series, not once per scrape.  Entries of series
    that left are dropped when a family's cache holds twice the series it renders.  Safe
    for concurrent scrapes (each dictionary operation is atomic)."""

    def __init__(self) -> None:
        self._families: dict[tuple[str, tuple[str, ...]], dict[tuple[str, ...], str]] = {}

    def family(self, name: str, label_names: tuple[str, ...]) -> dict[tuple[str, ...], str]:
        key = (name, label_names)
        found = self._families.get(key)
        if found is None:
            found = self._families[key] = {}
        return found

    def prune(self, name: str, label_names: tuple[str, ...], current: dict[tuple[str, ...], str]) -> None:
        self._families[(name, label_names)] = current


def _label_text(names: tuple[str, ...], labels: tuple[str, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, labels, strict=True)) + "}"


def _render_family(family_view: FamilyView, out: list[str], texts: LabelTexts) -> None:
    family = family_view.family
    names = family_view.label_names
    pairs: list[tuple[str, str, int]] = [(family.packets_name, family.packets_help, 0)]
    if family.bytes_name is not None:
        pairs.append((family.bytes_name, family.bytes_help, 1))
    cache = texts.family(family.packets_name, names)
    found: list[str | None] = list(map(cache.get, family_view.labels))
    if None in found:  # new series since the last scrape (every one, the first time)
        for position, text in enumerate(found):
            if text is None:
                labels = family_view.labels[position]
                found[position] = cache[labels] = _label_text(names, labels)
    escaped = cast(list[str], found)
    if len(cache) > 2 * len(escaped) + 1000:
        texts.prune(
            family.packets_name,
            names,
            dict(zip(family_view.labels, escaped, strict=True)),
        )
    # One join per metric over [name, labels, value, name, labels, value, ...]: the name
    # and each series' label text are kept strings, only the value is formatted (an
    # f-string per line cost ~25 % more at 500k series).
    values = family_view.values
    for metric_name, help_text, index in pairs:
        out.append(f"# HELP {metric_name} {_escape_help(help_text)}\n# TYPE {metric_name} counter\n")
        if not values:
            continue
        parts = [metric_name] * (3 * len(values))
        parts[1::3] = escaped
        parts[2::3] = [f" {value[index]}\n" for value in values]
        out.append("".join(parts))


def _format_value(value: float) -> str:
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _render_simple(metric: SimpleMetric, out: list[str]) -> None:
    out.append(f"# HELP {metric.name} {_escape_help(metric.help)}\n# TYPE {metric.name} {metric.type}\n")
    for labels, value in metric.samples:
        label_text = ",".join(
            f'{name}="{_escape_label(v)}"' for name, v in zip(metric.labels, labels, strict=True)
        )
        out.append(
            f"{metric.name}{{{label_text}}} {_format_value(value)}\n"
            if label_text
            else f"{metric.name} {_format_value(value)}\n"
        )


def render_text(view: StateView, *, version: str = __version__, texts: LabelTexts | None = None) -> str:
    """The whole exposition of ``view`` in the Prometheus text format; ``texts`` keeps the
    label texts for the next scrape (a server passes the same one every time)."""
    out: list[str] = []
    texts = texts if texts is not None else LabelTexts()
    for family_view in view.families:
        _render_family(family_view, out, texts)
    for metric in self_metrics(view, version):
        _render_simple(metric, out)
    return "".join(out)


def render_accountant(accountant: Accountant, now: float | None = None, *, version: str = __version__) -> str:
    """:func:`render_text` of the accountant's current state."""
    return render_text(accountant.view(time.time() if now is None else now), version=version)
