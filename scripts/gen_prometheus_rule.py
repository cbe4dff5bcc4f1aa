"""Writes deploy/monitoring/prometheusrule.yaml from deploy/monitoring/rules.yaml.

The plain Prometheus rule file is the one source; the Prometheus operator's PrometheusRule
carries the same groups under ``spec``.  Deterministic; the output is committed, and
tests/test_monitoring_rules.py fails when it is out of date.

    .venv/bin/python scripts/gen_prometheus_rule.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
HEADER = """\
# GENERATED from rules.yaml by scripts/gen_prometheus_rule.py: edit rules.yaml, then run it.
# The recording rules and alerts of rules.yaml for the Prometheus operator (kube-prometheus).
# Its ruleSelector must match these labels, and its ruleNamespaceSelector this namespace.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (queries, descriptions) as literal blocks, as a person writes them."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    """The PrometheusRule object carrying ``rules``' groups."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "calico-accountant",
            "namespace": "calico-accountant",
            "labels": {
                "app.kubernetes.io/name": "calico-accountant",
                "prometheus": "k8s",
                "role": "alert-rules",
            },
        },
        "spec": {"groups": rules["groups"]},
    }


def render(rules_text: str) -> str:
    document = prometheus_rule(yaml.safe_load(rules_text))
    return HEADER + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def main() -> int:
    target = MONITORING / "prometheusrule.yaml"
    target.write_text(render((MONITORING / "rules.yaml").read_text()))
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
