"""A real Prometheus beside the demo, with the deploy's recording rules and alerts loaded.

``demo --prometheus-config`` prints a scrape configuration for the demo's aggregator and
agents (for a Prometheus of your own); ``demo --with-prometheus`` starts Debian's
``prometheus`` with it, so a newcomer sees the alerts of ``deploy/monitoring/rules.yaml``
go pending and fire on the demo's default-deny drops.

The rules are the deploy's, with two changes, both said on the demo's screen: every alert's
``for`` is cut to :data:`DEMO_FOR` (the deploy waits 5-15 minutes before an alert fires;
nobody watches a demo that long), and the no-policy-drop alerts fire above 0 instead of
their production thresholds (the demo's pods open a few connections a second; the deploy
alerts above 1 dropped flow a second per app and 10 cluster-wide).  Everything else is the
deploy's, unchanged.  The aggregator is scraped with
``honor_labels: true``, as the deploy's ServiceMonitor does: its ``namespace``, ``pod`` and
``node`` labels are the workloads', not the scrape target's.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from calico_accountant_cli.demo.supervisor import ManagedProcess, Supervisor, wait_for_http

__all__ = [
    "DEMO_FOR",
    "RULES",
    "demo_rules",
    "missing_prometheus",
    "prometheus_config",
    "start_prometheus",
]

DEMO_FOR = "1m"
_THRESHOLD = re.compile(r">\s*[0-9.]+$")
RULES = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "rules.yaml"
"""The deploy's rule file, in a checkout (a wheel does not carry ``deploy/``)."""


def demo_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """``rules`` (a Prometheus rule file) with every alert's ``for`` at :data:`DEMO_FOR` and the
    no-policy-drop alerts' thresholds at 0."""
    groups = []
    for group in rules.get("groups", []):
        entries = []
        for rule in group.get("rules", []):
            if "alert" in rule and "for" in rule:
                rule = {**rule, "for": DEMO_FOR}
            if "NoPolicyDrops" in rule.get("alert", ""):
                rule = {**rule, "expr": _THRESHOLD.sub("> 0", str(rule["expr"]).strip())}
            entries.append(rule)
        groups.append({**group, "rules": entries})
    return {**rules, "groups": groups}


def prometheus_config(
    aggregator: str, agents: Sequence[str], rule_files: Sequence[str] = (), interval: str = "5s"
) -> str:
    """A Prometheus configuration scraping the aggregator (``HOST:PORT``) and the agents."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": "calico-accountant-aggregator",
                "honor_labels": True,  # namespace/pod/node are the workloads' (README, "Monitoring")
                "static_configs": [{"targets": [aggregator]}],
            },
        ],
    }
    if agents:
        config["scrape_configs"].append(
            {"job_name": "calico-accountant-agent", "static_configs": [{"targets": list(agents)}]}
        )
    return yaml.safe_dump(config, sort_keys=False)


def missing_prometheus() -> str | None:
    """Why ``--with-prometheus`` cannot run here, or None."""
    if shutil.which("prometheus") is None:
        return "no prometheus binary (Debian: apt-get install prometheus; ./run installs it)"
    if not RULES.is_file():
        return f"no rule file at {RULES} (run the demo from a checkout of the repository)"
    return None


def start_prometheus(
    supervisor: Supervisor, directory: Path, port: int, aggregator: str, agents: Sequence[str]
) -> ManagedProcess:
    """Prometheus on ``127.0.0.1:port`` with the demo's rules, its data under ``directory``."""
    rules_file = directory / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(demo_rules(yaml.safe_load(RULES.read_text())), sort_keys=False))
    config = directory / "prometheus.yml"
    config.write_text(prometheus_config(aggregator, agents, [str(rules_file)]))
    data = Path(tempfile.mkdtemp(prefix="prometheus-", dir=directory))
    process = supervisor.start(
        "prometheus",
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1d",
        ],
    )
    wait_for_http(f"http://127.0.0.1:{port}/-/ready", 30.0, process)
    return process
