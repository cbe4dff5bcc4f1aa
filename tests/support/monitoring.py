"""deploy/monitoring and deploy/grafana as the tests read them: the rule file, its promtool
tests, the dashboard's queries, and every series name the project's processes expose (a real
aggregator's /metrics and a real agent's)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from node_agent.health import AgentMetrics
from tests.support.exposition import aggregator_exposition, exposed_names
from tests.support.kustomize import DEPLOY

__all__ = [
    "DASHBOARD",
    "MONITORING",
    "RULES",
    "RULES_TEST",
    "agent_exposition",
    "dashboard",
    "dashboard_queries",
    "exposed_everywhere",
    "load_yaml",
    "rules",
]

MONITORING = DEPLOY / "monitoring"
RULES = MONITORING / "rules.yaml"
RULES_TEST = MONITORING / "rules-test.yaml"
DASHBOARD = DEPLOY / "grafana" / "calico-accountant.json"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    """Every rule of rules.yaml, recording and alerting, in file order."""
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def agent_exposition() -> str:
    """A real agent's /metrics after one read: its registry, every family with a sample."""
    metrics = AgentMetrics()
    metrics.read_duration.observe(0.05)
    metrics.reads.labels("ok").inc()
    metrics.counters.set(120)
    metrics.rules.set(340)
    metrics.diagnostics.labels("garbled_line").set(1)
    return metrics.render().decode()


def exposed_everywhere() -> set[str]:
    """Every series name the aggregator and the agents expose."""
    with tempfile.TemporaryDirectory() as directory:
        aggregator = aggregator_exposition(Path(directory))
    return exposed_names(aggregator) | exposed_names(agent_exposition())


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of the dashboard."""
    queries = [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(
                (f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query)
            )
    return queries


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded
