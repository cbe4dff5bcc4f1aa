"""``calico_accountant_policy_info`` and ``calico_accountant_policy_rule_info``: what each
policy in the datastore is and what each of its rules says, as info series (value 1).

They come from the catalog, not from the nodes, so they exist for every policy the
datastore holds, also for one no node renders (its selector matches no workload): that
is how ``calico-accountant audit`` tells a rule that can never match from one that saw no
traffic, and how users join rule hits to what the rule says::

    calico_accountant_node_policy_rule_packets_total
      * on (tier, policy_kind, policy_namespace, policy, direction, rule)
        group_left (protocol, ports, source, destination)
      calico_accountant_policy_rule_info

``rule`` is the same id as in the per-rule hit family: the 0-based index among the
policy's rules in one direction (every Calico rule, Allow, Deny, Pass or Log, is one verdict
rule in felix's chain).  The rule families are per direction, so this one has ``direction``
too.  Staged policies are left out: felix renders no chain for them.

``canary`` is ``true`` for a policy labelled or annotated ``calico-accountant.io/canary:
"true"``: an allow-all placed behind restrictive policies, whose accepts are the traffic
they miss (``audit`` reports it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator.catalog.index import Catalog
from aggregator.datastore.objects import CalicoObject
from aggregator.metrics.family import POLICY_LABELS
from aggregator.metrics.rule_text import bounded, rule_text
from aggregator.model import PolicyIdentity
from calico_accountant.contract import CANARY_KEY
from calico_accountant.felix.naming import STAGED_KINDS

__all__ = [
    "CANARY_KEY",
    "POLICY_INFO",
    "POLICY_INFO_LABELS",
    "RULE_INFO",
    "RULE_INFO_LABELS",
    "PolicyInfoCollector",
    "is_canary",
    "policy_info_rows",
    "rule_info_rows",
]

POLICY_INFO = "calico_accountant_policy_info"
RULE_INFO = "calico_accountant_policy_rule_info"
POLICY_INFO_LABELS = (*POLICY_LABELS, "order", "selector", "canary")
RULE_INFO_LABELS = (
    *POLICY_LABELS,
    "direction",
    "rule",
    "action",
    "protocol",
    "ports",
    "source",
    "destination",
)

Row = tuple[str, ...]


def is_canary(obj: CalicoObject) -> bool:
    """Whether the policy carries :data:`CANARY_KEY` ``= "true"`` as a label or an annotation."""
    annotations = obj.metadata.get("annotations")
    for source in (obj.labels, annotations if isinstance(annotations, Mapping) else {}):
        value = source.get(CANARY_KEY)
        if isinstance(value, str) and value.strip().lower() == "true":
            return True
    return False


def _directions(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The directions felix renders: ``types`` when given, else ingress plus egress if it has rules."""
    types = spec.get("types")
    if isinstance(types, list) and types:
        wanted = {str(t).lower() for t in types}
        return tuple(d for d in ("ingress", "egress") if d in wanted)
    return ("ingress", "egress") if spec.get("egress") else ("ingress",)


def _order(spec: Mapping[str, Any]) -> str:
    order = spec.get("order")
    if isinstance(order, bool) or not isinstance(order, int | float):
        return ""
    return str(int(order)) if float(order).is_integer() else str(order)


def _policies(catalog: Catalog) -> Iterator[tuple[PolicyIdentity, CalicoObject]]:
    for identity, obj in catalog.policy_objects():
        if identity.kind not in STAGED_KINDS:
            yield identity, obj


def policy_info_rows(catalog: Catalog) -> list[Row]:
    """One row of :data:`POLICY_INFO_LABELS` per (non-staged) policy (pure)."""
    rows: list[Row] = []
    for identity, obj in _policies(catalog):
        spec = obj.spec
        selector = spec.get("selector")
        rows.append(
            (
                identity.tier,
                str(identity.kind),
                identity.namespace,
                identity.name,
                _order(spec),
                bounded(selector) if isinstance(selector, str) else "",
                "true" if is_canary(obj) else "false",
            )
        )
    return rows


def rule_info_rows(catalog: Catalog) -> list[Row]:
    """One row of :data:`RULE_INFO_LABELS` per rule of every (non-staged) policy (pure)."""
    rows: list[Row] = []
    for identity, obj in _policies(catalog):
        spec = obj.spec
        for direction in _directions(spec):
            rules = spec.get(direction)
            if not isinstance(rules, list):
                continue
            for index, rule in enumerate(rules):
                text = rule_text(rule)
                rows.append(
                    (
                        identity.tier,
                        str(identity.kind),
                        identity.namespace,
                        identity.name,
                        direction,
                        str(index),
                        text.action,
                        text.protocol,
                        text.ports,
                        text.source,
                        text.destination,
                    )
                )
    return rows


class PolicyInfoCollector(Collector):
    """Both info families for the current catalog; rendered once per catalog (catalogs are
    immutable and replaced on change), so scrapes between datastore changes cost a copy."""

    def __init__(self, catalog: Callable[[], Catalog], *, rules: bool = True) -> None:
        self._catalog = catalog
        self._with_rules = rules
        self._cached: tuple[Catalog, list[Row], list[Row]] | None = None

    def _rows(self) -> tuple[list[Row], list[Row]]:
        catalog = self._catalog()
        cached = self._cached
        if cached is None or cached[0] is not catalog:
            rules = rule_info_rows(catalog) if self._with_rules else []
            cached = (catalog, policy_info_rows(catalog), rules)
            self._cached = cached
        return cached[1], cached[2]

    def collect(self) -> Iterator[Metric]:
        policies, rules = self._rows()
        policy_family = GaugeMetricFamily(
            POLICY_INFO,
            "One series per policy in the datastore (value 1): its order, selector (at most 120 "
            "characters) and whether it is a canary (label or annotation calico-accountant.io/canary).",
            labels=POLICY_INFO_LABELS,
        )
        for row in policies:
            policy_family.add_metric(list(row), 1.0)
        yield policy_family
        if not self._with_rules:
            return
        rule_family = GaugeMetricFamily(
            RULE_INFO,
            "One series per policy rule in the datastore (value 1): rule is the 0-based index among the "
            "policy's rules in that direction, as in calico_accountant_node_policy_rule_packets_total; "
            "protocol, ports, source and destination are short (at most 120 characters; empty: any).",
            labels=RULE_INFO_LABELS,
        )
        for row in rules:
            rule_family.add_metric(list(row), 1.0)
        yield rule_family
