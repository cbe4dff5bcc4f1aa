"""What a Calico policy rule says, as short label values (pure).

The rule-info metric (:mod:`aggregator.metrics.policy_info`) puts a rule's protocol, ports,
source and destination in labels so users can join rule hits to what each rule says.
Selectors and CIDR lists can be arbitrarily long, and a label value is kept by Prometheus
for every sample, so every value here is bounded: lists show their first
:data:`MAX_ITEMS` items then ``+N``, and a whole value is cut to :data:`MAX_LABEL_CHARS`
characters ending in ``...``.  An empty value means "any" (the rule does not restrict it).

Field names are Calico's v3 ``Rule`` and ``EntityRule`` (``projectcalico.org/v3``);
anything of the wrong JSON type is shown as ``?`` rather than raising, since a rule the
aggregator cannot render must never stop a scrape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_ITEMS", "MAX_LABEL_CHARS", "RuleText", "bounded", "rule_text"]

MAX_LABEL_CHARS = 120
"""Longest label value (characters); longer ones end in ``...``."""
MAX_ITEMS = 4
"""Items of a list (nets, ports, service accounts) shown before ``+N``."""

_ACTIONS = {"allow": "allow", "deny": "deny", "pass": "pass", "log": "log", "next-tier": "pass"}


@dataclass(frozen=True, slots=True)
class RuleText:
    """One rule's label values; empty strings mean "any"."""

    action: str
    protocol: str
    ports: str
    source: str
    destination: str


def bounded(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters (``...`` marks a cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _items(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | int | float):
        return [str(value)]
    if isinstance(value, Sequence):
        return [str(item) if isinstance(item, str | int | float) else "?" for item in value]
    return ["?"]


def _joined(values: list[str]) -> str:
    shown = values[:MAX_ITEMS]
    more = len(values) - len(shown)
    return ",".join(shown) + (f",+{more}" if more > 0 else "")


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else "?"


def _entity(raw: Any) -> tuple[str, str]:
    """(what the entity matches, its ports) of a ``source``/``destination`` EntityRule."""
    if not isinstance(raw, Mapping):
        return ("" if raw is None else "?"), ""
    parts: list[str] = []
    for key, shown in (("selector", "sel"), ("notSelector", "!sel"), ("namespaceSelector", "ns")):
        text = _text(raw.get(key))
        if text:
            parts.append(f"{shown}={text}")
    for key, shown in (("nets", "nets"), ("notNets", "!nets")):
        nets = _items(raw.get(key))
        if nets:
            parts.append(f"{shown}={_joined(nets)}")
    accounts = raw.get("serviceAccounts")
    if isinstance(accounts, Mapping):
        names = _items(accounts.get("names"))
        if names:
            parts.append(f"sa={_joined(names)}")
        selector = _text(accounts.get("selector"))
        if selector:
            parts.append(f"sa-sel={selector}")
    elif accounts is not None:
        parts.append("sa=?")
    services = raw.get("services")
    if isinstance(services, Mapping):
        name, namespace = _text(services.get("name")), _text(services.get("namespace"))
        parts.append(f"svc={namespace + '/' if namespace else ''}{name}")
    elif services is not None:
        parts.append("svc=?")
    ports = _items(raw.get("ports"))
    not_ports = _items(raw.get("notPorts"))
    port_text = ",".join(
        p for p in (_joined(ports) if ports else "", "!" + _joined(not_ports) if not_ports else "") if p
    )
    return bounded("; ".join(parts)), bounded(port_text)


def rule_text(rule: Any) -> RuleText:
    """The label values of one ``ingress``/``egress`` rule of a policy spec."""
    if not isinstance(rule, Mapping):
        return RuleText("?", "", "", "?", "?")
    action = _ACTIONS.get(_text(rule.get("action")).lower(), "?")
    protocol = _text_or_number(rule.get("protocol")).lower()
    not_protocol = _text_or_number(rule.get("notProtocol")).lower()
    if not_protocol:
        protocol = f"{protocol}!{not_protocol}" if protocol else f"!{not_protocol}"
    icmp = rule.get("icmp")
    if isinstance(icmp, Mapping) and icmp.get("type") is not None:
        protocol += f" type={_text_or_number(icmp.get('type'))}"
        if icmp.get("code") is not None:
            protocol += f"/{_text_or_number(icmp.get('code'))}"
    version = rule.get("ipVersion")
    if version in (4, 6):
        protocol = f"{protocol} ipv{version}".strip()
    source, source_ports = _entity(rule.get("source"))
    destination, ports = _entity(rule.get("destination"))
    if source_ports:
        source = bounded(f"{source}; ports={source_ports}" if source else f"ports={source_ports}")
    return RuleText(action, bounded(protocol), ports, source, destination)


def _text_or_number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str | int):
        return str(value)
    return "?"
