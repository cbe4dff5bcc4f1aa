"""The audit's scenario: the sample cluster plus canaries, a policy that selects nothing and a
rule nobody uses; two weeks of traffic through a real aggregator; and what every audit
section must say, worked out from the cluster and the traffic oracle alone.

* ``shop/canary-catalog`` (labelled ``calico-accountant.io/canary: "true"``) is an allow-all
  at order 1500 behind ``catalog``'s policies: the plan's cart->catalog flow, which the
  default deny dropped, now reaches it (a canary that saw traffic);
* ``payments/canary-payments-api`` (named by ``--canary``) sits behind policies that allow or
  deny everything the plan sends to ``payments-api`` (a canary that saw none);
* ``shop/never-selected`` selects no pod (rules that can never match: not rendered);
* ``payments/allow-checkout-to-payments-api`` gets a second rule, port 9999, that no flow uses
  (a rendered rule that saw no traffic);
* the second week leaves out payments-api -> ledger-db, so ``allow-api-to-ledger-db`` falls;
* frontend -> cart ICMP is still dropped by the default deny.

Expectations are computed from :class:`~tests.support.simulated.Expected` (what the traffic
moved) and from :func:`~calico_accountant_cli.demo.verdicts.policy_applies` (which policy
felix renders for which pod), never from the audit's code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from calico_accountant_cli.demo.cluster import (
    Cluster,
    Policy,
    PolicyRule,
    load_sample_cluster,
    manifest_documents,
)
from calico_accountant_cli.demo.plan import DEFAULT_PLAN
from calico_accountant_cli.demo.verdicts import policy_applies
from tests.support.simulated import CLUSTER_POLICY, EXACT, NODE_RULE, WORKLOAD_NO_POLICY, WORKLOAD_POLICY, Key

__all__ = [
    "CANARY_BY_FLAG",
    "REDUCED_PLAN",
    "LabelledFileStore",
    "Window",
    "expected_sections",
    "scenario_cluster",
]

CANARY_LABEL = {"calico-accountant.io/canary": "true"}
CANARY_BY_FLAG = "payments/canary-payments-api"
REDUCED_PLAN = tuple(
    p for p in DEFAULT_PLAN if (p.source, p.dest) != (("payments", "payments-api"), ("payments", "ledger-db"))
)

Window = dict[str, Counter[Key]]
"""Packets per series of each :data:`EXACT` family moved in one window."""


def _allow_all(namespace: str, name: str, app: str) -> Policy:
    return Policy(
        kind="NetworkPolicy",
        namespace=namespace,
        name=name,
        tier="default",
        order=1500.0,
        selector=f"app == '{app}'",
        namespace_selector=None,
        types=("ingress",),
        ingress=(PolicyRule("allow"),),
        egress=(),
    )


def scenario_cluster() -> Cluster:
    cluster = load_sample_cluster()
    checkout = cluster.policy("allow-checkout-to-payments-api", "payments")
    unused_rule = replace(checkout.ingress[0], ports=(9999,))
    cluster = cluster.with_policy(replace(checkout, ingress=(*checkout.ingress, unused_rule)))
    never = replace(
        _allow_all("shop", "never-selected", "no-such-app"),
        order=900.0,
        ingress=(PolicyRule("allow", "tcp", (8080,), source_selector="app == 'frontend'"),),
    )
    for policy in (
        _allow_all("shop", "canary-catalog", "catalog"),
        _allow_all("payments", "canary-payments-api", "payments-api"),
        never,
    ):
        cluster = cluster.with_policy(policy)
    return cluster


@dataclass
class LabelledFileStore:
    """A ``file:`` datastore of the cluster, with ``calico-accountant.io/canary`` on the canary
    policy (the demo's model has no policy labels)."""

    path: Path
    labelled: tuple[tuple[str, str], ...] = (("shop", "canary-catalog"),)
    spec: str = field(init=False)

    def __post_init__(self) -> None:
        self.spec = f"file:{self.path}"

    def write(self, cluster: Cluster) -> None:
        documents: list[dict[str, Any]] = manifest_documents(cluster)
        for document in documents:
            metadata = document["metadata"]
            if (metadata.get("namespace", ""), metadata["name"]) in self.labelled:
                metadata["labels"] = {**metadata.get("labels", {}), **CANARY_LABEL}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        temporary.replace(self.path)


def window(later: Window, earlier: Window | None = None) -> Window:
    return {f: later[f] - (earlier[f] if earlier else Counter()) for f in EXACT}


def _key(policy: Policy) -> tuple[str, str, str, str]:
    return (policy.tier, policy.shown_kind, policy.namespace, policy.shown_name)


def _policy_dict(key: Sequence[str]) -> dict[str, Any]:
    return dict(zip(("tier", "policy_kind", "policy_namespace", "policy"), key, strict=True))


def _rendered(cluster: Cluster, policy: Policy, direction: str) -> bool:
    return any(policy_applies(cluster, policy, w, direction) for w in cluster.workloads)


def expected_sections(
    cluster: Cluster, current: Window, previous: Window | None, *, with_datastore: bool = True
) -> dict[str, list[dict[str, Any]]]:
    """Every JSON section ``audit`` must print for ``current`` (``previous``: the window before;
    None when the source has none).  Entries in the audit's order."""
    policies = {_key(p): p for p in cluster.policies}
    moved: Counter[tuple[str, ...]] = Counter()
    for family in (WORKLOAD_POLICY, NODE_RULE, CLUSTER_POLICY):
        for key, packets in current[family].items():
            index = {WORKLOAD_POLICY: 6, NODE_RULE: 2, CLUSTER_POLICY: 2}[family]
            moved[tuple(key[index : index + 4])] += packets
    rule_moved: Counter[tuple[tuple[str, ...], str, int]] = Counter()
    for key, packets in current[NODE_RULE].items():
        rule_moved[(tuple(key[2:6]), key[1], int(key[6]))] += packets

    canaries = []
    canary_names = ("canary-catalog", "canary-payments-api") if with_datastore else ("canary-payments-api",)
    for key in sorted(k for k in policies if k[3] in canary_names):
        accepted: Counter[tuple[str, str]] = Counter()
        for wkey, packets in current[WORKLOAD_POLICY].items():
            if tuple(wkey[6:10]) == key and wkey[5] == "accept":
                accepted[(wkey[1], wkey[3])] += packets
        rows = sorted(accepted.items(), key=lambda item: (-item[1], item[0]))
        if rows:
            canaries += [
                {**_policy_dict(key), "status": "hit", "namespace": ns, "app": app, "packets": n}
                for (ns, app), n in rows
            ]
        else:
            canaries.append(
                {**_policy_dict(key), "status": "covered", "namespace": "", "app": "", "packets": 0}
            )

    unused_policies = []
    for key in sorted(policies):
        policy = policies[key]
        rendered = any(_rendered(cluster, policy, d) for d in policy.types)
        if moved[key] or (not with_datastore and not rendered):
            continue
        if not rendered:
            reason = "not_rendered"
        elif with_datastore and not any(policy.rules(d) for d in policy.types):
            reason = "no_rules"
        else:
            reason = "no_traffic"
        unused_policies.append({**_policy_dict(key), "reason": reason})

    unused_rules = []
    for key in sorted(policies):
        policy = policies[key]
        for direction in sorted(policy.types, key=("ingress", "egress").index):
            rendered = _rendered(cluster, policy, direction)
            for index, _ in enumerate(policy.rules(direction)):
                if rule_moved[(key, direction, index)] or (not with_datastore and not rendered):
                    continue
                reason = "no_traffic" if rendered else "not_rendered"
                unused_rules.append(
                    {**_policy_dict(key), "direction": direction, "rule": index, "reason": reason}
                )
    unused_rules.sort(
        key=lambda r: (
            tuple(r[k] for k in ("tier", "policy_kind", "policy_namespace", "policy")),
            r["direction"],
            r["rule"],
        )
    )

    drops: Counter[tuple[str, str, str, str]] = Counter()
    for key, packets in current[WORKLOAD_NO_POLICY].items():
        drops[(key[1], key[3], key[4], key[5])] += packets
    default_deny = []
    for (namespace, app, direction, tier), packets in sorted(drops.items(), key=lambda i: (-i[1], i[0])):
        pods = [w for w in cluster.workloads if (w.namespace, w.app) == (namespace, app)]
        selecting = sorted(
            k
            for k, p in policies.items()
            if p.tier == tier and any(policy_applies(cluster, p, w, direction) for w in pods)
        )
        default_deny.append(
            {
                **_policy_dict((tier, "", "", "")),
                "namespace": namespace,
                "app": app,
                "direction": direction,
                "packets": packets,
                "policies": [_policy_dict(k) for k in selecting],
            }
        )

    denies = _denies(current)
    changes: list[dict[str, Any]] = []
    if previous is not None:
        before: Counter[tuple[str, ...]] = Counter()
        now: Counter[tuple[str, ...]] = Counter()
        for counts, target in ((previous, before), (current, now)):
            for key, packets in counts[CLUSTER_POLICY].items():
                if key[1] == "accept":
                    target[tuple(key[2:6])] += packets
        for key, was in before.items():
            if was and (was - now[key]) / was > 0.5:
                changes.append(
                    {
                        **_policy_dict(key),
                        "packets": now[key],
                        "previous_packets": was,
                        "fall": round((was - now[key]) / was, 4),
                    }
                )
        changes.sort(
            key=lambda c: (
                -c["fall"],
                -c["previous_packets"],
                tuple(c[k] for k in ("tier", "policy_kind", "policy_namespace", "policy")),
            )
        )
    return {
        "canaries": canaries,
        "unused_policies": unused_policies,
        "unused_rules": unused_rules,
        "default_deny": default_deny,
        "denies": denies,
        "changes": changes,
    }


def _denies(current: Window, top: int = 10) -> list[dict[str, Any]]:
    def ranked(counts: Counter[Any]) -> list[tuple[Any, int]]:
        return sorted(((k, n) for k, n in counts.items() if n > 0), key=lambda i: (-i[1], i[0]))[:top]

    policies: Counter[tuple[str, ...]] = Counter()
    for key, packets in current[CLUSTER_POLICY].items():
        if key[1] == "deny":
            policies[tuple(key[2:6])] += packets
    rules: Counter[tuple[tuple[str, ...], str, int]] = Counter()
    for key, packets in current[NODE_RULE].items():
        if key[7] == "deny":
            rules[(tuple(key[2:6]), key[1], int(key[6]))] += packets
    namespaces: dict[str, Counter[tuple[str, ...]]] = {}
    for key, packets in current[WORKLOAD_POLICY].items():
        if key[5] == "deny":
            namespaces.setdefault(key[1], Counter())[tuple(key[6:10])] += packets
    out: list[dict[str, Any]] = [
        {**_policy_dict(k), "scope": "cluster", "direction": "", "rule": None, "namespace": "", "packets": n}
        for k, n in ranked(policies)
    ]
    out += [
        {**_policy_dict(k), "scope": "cluster", "direction": d, "rule": r, "namespace": "", "packets": n}
        for (k, d, r), n in ranked(rules)
    ]
    for namespace in sorted(namespaces):
        out += [
            {
                **_policy_dict(k),
                "scope": "namespace",
                "direction": "",
                "rule": None,
                "namespace": namespace,
                "packets": n,
            }
            for k, n in ranked(namespaces[namespace])
        ]
    return out
