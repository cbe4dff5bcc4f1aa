"""A history of real expositions loaded into a real Prometheus: OpenMetrics with timestamps,
then ``promtool tsdb create-blocks-from openmetrics`` (Debian's ``prometheus`` package).

A test scrapes a real aggregator at several moments of a scenario and gives each scrape a
timestamp (days apart, say), so Prometheus holds a week or two of series exactly as the
aggregator exported them, in seconds.  Counters a scrape does not have yet (a series that
appears later) are written as 0 at the earlier timestamps: a counter that did not exist
counted nothing, and without those zeros ``increase()`` would extrapolate from the first
sample it sees.  Gauges are written only where they were exported.

Usage::

    history = openmetrics_history([(t0, text0), (t1, text1), ...])
    prometheus = PrometheusServer(targets=[], retention="60d")
    backfill(history, prometheus.data_path)
    prometheus.start()
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["PROMTOOL", "backfill", "openmetrics_history", "promtool_available"]

PROMTOOL = os.environ.get("PROMTOOL_BINARY", shutil.which("promtool") or "/usr/bin/promtool")

Labels = tuple[tuple[str, str], ...]


def promtool_available() -> bool:
    return os.access(PROMTOOL, os.X_OK)


@dataclass
class _Family:
    kind: str
    help: str
    samples: dict[tuple[str, Labels], dict[float, float]] = field(default_factory=dict)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels) + "}"


def openmetrics_history(
    scrapes: Sequence[tuple[float, str]], prefix: str = "calico_accountant_", exclude: tuple[str, ...] = ()
) -> str:
    """The families named ``prefix...`` (but not ``exclude...``) of ``(timestamp, exposition)``
    pairs as one OpenMetrics document (families grouped, each series' samples in time order)."""
    families: dict[str, _Family] = {}
    times = sorted(t for t, _ in scrapes)
    for moment, text in scrapes:
        for metric in text_string_to_metric_families(text):
            if not metric.name.startswith(prefix) or metric.type not in ("counter", "gauge"):
                continue
            if exclude and metric.name.startswith(exclude):
                continue
            family = families.setdefault(metric.name, _Family(metric.type, metric.documentation))
            for sample in metric.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                family.samples.setdefault(key, {})[moment] = float(sample.value)
    lines = []
    for name in sorted(families):
        family = families[name]
        lines.append(f"# HELP {name} {_escape(family.help)}")
        lines.append(f"# TYPE {name} {family.kind}")
        for (sample_name, labels), values in sorted(family.samples.items()):
            if family.kind == "counter":
                first = min(values)
                values = {**{t: 0.0 for t in times if t < first}, **values}
            for moment in sorted(values):
                lines.append(f"{sample_name}{_labels(labels)} {values[moment]!r} {moment:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def backfill(openmetrics: str, data_path: Path, timeout: float = 120) -> None:
    """Write ``openmetrics`` as TSDB blocks into ``data_path`` (a Prometheus's before it starts)."""
    data_path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".om", delete=False) as handle:
        handle.write(openmetrics)
        source = Path(handle.name)
    try:
        result = subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        source.unlink(missing_ok=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"promtool backfill failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
