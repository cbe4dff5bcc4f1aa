"""A felix-shaped ``filter`` table for one node of the sample cluster (pure).

The lab's own renderer (:mod:`calico_accountant_cli.lab.calico_rules`) covers namespaced
default-tier policies without source matches; the sample cluster needs more, so this
module renders, in the same style and with the same marks:

* tiers (v3.30: ``Start of tier <t>``, ``End of tier <t>. Drop if no policies passed
  packet`` only for tiers whose default action is Deny; v3.27: one ``Start of
  policies`` list, see :func:`calico_accountant_cli.demo.verdicts.effective_tiers`);
* GlobalNetworkPolicies and Kubernetes policies, named as felix names them from the
  *stored* name (``<ns>/<stored>`` for v3.27, ``<tier>/<ns>/<stored>`` for v3.30,
  hashed by :func:`calico_accountant.felix.naming.length_limited_id`), with the identity comment
  ``Policy <ns>/<stored> <direction>``;
* rule sources as felix renders selectors: ``-m set --match-set cali40s:<hash> src``
  (:func:`node_ipsets` gives the sets' members); without ``ipset`` on the machine, one
  source pod is ``-s <ip>/32`` and several are a felix-style match block on the scratch
  mark, so a rule is still exactly one verdict rule;
* profiles with their own rules (``kns.*`` allow all; ``ksa.*`` are comment-only).

Every rule carries a chained ``cali:`` hash, as felix's do, so a rule keeps its hash
(and, through :func:`carry_counters`, its counter) as long as it and the rules before
it in its chain are unchanged -- which is how felix diff-updates and what decides
whether the ledger sees a counter as continued, reset, or new.
"""

from __future__ import annotations

import base64
import hashlib
import re

from calico_accountant.felix.naming import IPTABLES_MAX_CHAIN_NAME, NFT_MAX_CHAIN_NAME, length_limited_id
from calico_accountant_cli.demo.cluster import Cluster, Policy, PolicyRule, Workload
from calico_accountant_cli.demo.verdicts import (
    applicable_tiers,
    effective_tiers,
    policy_applies,
    rule_sources,
)
from calico_accountant_cli.lab.calico_rules import (
    ACCEPT_MARK,
    PASS_MARK,
    FelixChain,
    Layout,
    filter_table_text,
    forwarding_chains,
    verdict_rules,
)

__all__ = [
    "carry_counters",
    "node_ipsets",
    "policy_chain",
    "profile_chain",
    "render_node_table",
    "scratch_mark",
    "source_set_name",
]

_COUNTED_RULE = re.compile(r"^\[(\d+):(\d+)\] (-A (\S+) .*)$")
_HASH = re.compile(r'--comment "?cali:([A-Za-z0-9_-]{16})"?')


def scratch_mark(layout: Layout) -> int:
    """felix's scratch0 bit: right after accept and pass (v3.27), after drop from v3.30."""
    return 0x80000 if layout is Layout.V3_30 else 0x40000


def _mark(bits: int) -> str:
    return f"{bits:#x}/{bits:#x}"


def policy_chain(
    policy: Policy, direction: str, layout: Layout, max_len: int = IPTABLES_MAX_CHAIN_NAME
) -> str:
    """The ``cali-pi-``/``cali-po-`` chain felix of ``layout`` gives ``policy`` (``max_len``
    256: its name in nftables mode, v3.30+, without the ``filter-`` layer prefix)."""
    prefix = "cali-pi-" if direction == "ingress" else "cali-po-"
    parts = [policy.namespace, policy.stored_name] if policy.namespace else [policy.stored_name]
    if layout is Layout.V3_30:
        parts.insert(0, policy.tier)
    return length_limited_id(prefix, "/".join(parts), max_len)


def profile_chain(profile: str, direction: str, max_len: int = IPTABLES_MAX_CHAIN_NAME) -> str:
    return length_limited_id("cali-pri-" if direction == "ingress" else "cali-pro-", profile, max_len)


def nft_chain_names(cluster: Cluster, layout: Layout) -> dict[str, str]:
    """iptables chain -> nftables chain of every policy and profile (felix v3.30+ does not
    hash nft chain names up to 256 characters)."""
    names: dict[str, str] = {}
    for direction in ("ingress", "egress"):
        for policy in cluster.policies:
            names[policy_chain(policy, direction, layout)] = policy_chain(
                policy, direction, layout, NFT_MAX_CHAIN_NAME
            )
        for profile in cluster.profiles:
            names[profile_chain(profile.name, direction)] = profile_chain(
                profile.name, direction, NFT_MAX_CHAIN_NAME
            )
    return names


def _protocol_parts(rule: PolicyRule) -> tuple[str, str]:
    """(``-p`` part printed before the comments, match modules printed after them)."""
    if rule.protocol is None:
        return "", ""
    ports = f"-m multiport --dports {','.join(str(p) for p in rule.ports)} " if rule.ports else ""
    return f"-p {rule.protocol}", ports


def source_set_name(policy: Policy, rule: PolicyRule) -> str:
    """The IP set felix would name for a rule's source selector (``cali40s:`` + a hash)."""
    scope = f"{policy.kind}/{policy.namespace}"
    text = f"{scope}|{rule.source_namespace_selector or ''}|{rule.source_selector or ''}"
    digest = base64.urlsafe_b64encode(hashlib.sha224(text.encode()).digest()).decode()
    return "cali40s:" + digest[:23]


def node_ipsets(cluster: Cluster, node: str, layout: Layout) -> dict[str, tuple[str, ...]]:
    """The IP sets the node's table refers to (name → sorted member addresses)."""
    workloads = cluster.on_node(node)
    sets: dict[str, tuple[str, ...]] = {}
    for tier in effective_tiers(cluster, layout):
        for policy in tier.policies:
            if not any(policy_applies(cluster, policy, w, "ingress") for w in workloads):
                continue
            for rule in policy.ingress:
                sources = rule_sources(cluster, policy, rule)
                if sources is not None:
                    sets[source_set_name(policy, rule)] = tuple(sorted({w.ipv4 for w in sources}))
    return sets


def _policy_rules(
    cluster: Cluster, policy: Policy, direction: str, layout: Layout, use_ipsets: bool
) -> list[tuple[str, str]]:
    """(prefix, body) of every rule of the policy chain, in order."""
    scratch = scratch_mark(layout)
    out: list[tuple[str, str]] = []
    rules = policy.rules(direction)
    for index, rule in enumerate(rules):
        protocol, match = _protocol_parts(rule)
        sources = rule_sources(cluster, policy, rule) if direction == "ingress" else None
        prefix = protocol
        if sources is not None and use_ipsets:
            match = f"-m set --match-set {source_set_name(policy, rule)} src {match}"
        elif sources is not None:
            addresses = sorted({w.ipv4 for w in sources})
            if len(addresses) == 1:
                prefix = f"-s {addresses[0]}/32 {protocol}".strip()
            else:
                out.append(("", f"-j MARK --set-xmark 0x0/{scratch:#x}"))
                out.extend(
                    (f"-s {address}/32", f"-j MARK --set-xmark {_mark(scratch)}") for address in addresses
                )
                match = f"-m mark --mark {_mark(scratch)} {match}"
        out.extend(verdict_rules(rule.action, prefix, match, layout, last=index == len(rules) - 1))
    return out


def _policy_chain(
    cluster: Cluster, policy: Policy, direction: str, layout: Layout, use_ipsets: bool
) -> FelixChain:
    chain = FelixChain(policy_chain(policy, direction, layout))
    scope = f"{policy.namespace}/{policy.stored_name}" if policy.namespace else policy.stored_name
    identity = [f"Policy {scope} {direction}"]
    rendered = _policy_rules(cluster, policy, direction, layout, use_ipsets)
    if not rendered:
        chain.add("", comments=identity)
    for index, (prefix, body) in enumerate(rendered):
        chain.add(body, prefix=prefix, comments=identity if index == 0 else ())
    return chain


def _profile_chain(cluster: Cluster, name: str, direction: str) -> FelixChain:
    chain = FelixChain(profile_chain(name, direction))
    identity = [f"Profile {name} {direction}"]
    profile = cluster.profile(name)
    allows = profile is not None and (
        profile.allow_ingress if direction == "ingress" else profile.allow_egress
    )
    chain.add(f"-j MARK --set-xmark {_mark(ACCEPT_MARK)}" if allows else "", comments=identity)
    return chain


def _endpoint_chain(cluster: Cluster, workload: Workload, direction: str, layout: Layout) -> FelixChain:
    name = ("cali-tw-" if direction == "ingress" else "cali-fw-") + workload.interface
    chain = FelixChain(name)
    chain.add("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    chain.add("-m conntrack --ctstate INVALID -j DROP")
    clear = ACCEPT_MARK | PASS_MARK if layout is Layout.V3_30 else ACCEPT_MARK
    chain.add(f"-j MARK --set-xmark 0x0/{clear:#x}")
    if direction == "egress":
        chain.add(
            "-m multiport --dports 4789 -j DROP",
            prefix="-p udp",
            comments=["Drop VXLAN encapped packets originating in workloads"],
        )
        chain.add(
            "-j DROP", prefix="-p ipencap", comments=["Drop IPinIP encapped packets originating in workloads"]
        )
    tiers = applicable_tiers(cluster, layout, workload, direction)
    for tier in tiers:
        start = f"Start of tier {tier.name}" if layout is Layout.V3_30 else "Start of policies"
        chain.add(f"-j MARK --set-xmark 0x0/{PASS_MARK:#x}", comments=[start])
        for policy in tier.policies:
            chain.add(f"-m mark --mark 0x0/{PASS_MARK:#x} -j {policy_chain(policy, direction, layout)}")
            chain.add(
                f"-m mark --mark {_mark(ACCEPT_MARK)} -j RETURN", comments=["Return if policy accepted"]
            )
        if tier.default_action == "Deny":
            end = "Drop if no policies passed packet"
            if layout is Layout.V3_30:
                end = f"End of tier {tier.name}. {end}"
            chain.add(f"-m mark --mark 0x0/{PASS_MARK:#x} -j DROP", comments=[end])
    for profile in workload.profiles:
        chain.add(f"-j {profile_chain(profile, direction)}")
        chain.add(f"-m mark --mark {_mark(ACCEPT_MARK)} -j RETURN", comments=["Return if profile accepted"])
    chain.add("-j DROP", comments=["Drop if no profiles matched"])
    return chain


def render_node_table(cluster: Cluster, node: str, layout: Layout, *, use_ipsets: bool = True) -> str:
    """The IPv4 ``*filter`` table felix of ``layout`` would program on ``node``, zero counters.

    Rule sources match IP sets, as felix renders selectors (load :func:`node_ipsets`
    first); with ``use_ipsets=False`` a single source is ``-s`` and several are a match
    block on felix's scratch mark (for machines without ``ipset``)."""
    workloads = sorted(cluster.on_node(node), key=lambda w: w.interface)
    chains = forwarding_chains([workload.interface for workload in workloads])
    for workload in workloads:
        chains.append(_endpoint_chain(cluster, workload, "egress", layout))
        chains.append(_endpoint_chain(cluster, workload, "ingress", layout))
    for direction in ("ingress", "egress"):
        for tier in effective_tiers(cluster, layout):
            for policy in tier.policies:
                if any(policy_applies(cluster, policy, w, direction) for w in workloads):
                    chains.append(_policy_chain(cluster, policy, direction, layout, use_ipsets))
    profiles = dict.fromkeys(p for w in workloads for p in w.profiles)
    for profile in profiles:
        chains.append(_profile_chain(cluster, profile, "ingress"))
        chains.append(_profile_chain(cluster, profile, "egress"))
    return filter_table_text(chains)


def carry_counters(saved: str, rendered: str, *, reset_chains: frozenset[str] = frozenset()) -> str:
    """``rendered`` with each rule's counter taken from ``saved`` where the same chain
    has a rule with the same ``cali:`` hash (felix keeps such rules in place); every
    other rule, and every rule of ``reset_chains``, starts at zero."""
    counters: dict[tuple[str, str], str] = {}
    for line in saved.splitlines():
        match = _COUNTED_RULE.match(line)
        if match is None:
            continue
        found = _HASH.search(match.group(3))
        if found is not None:
            counters[(match.group(4), found.group(1))] = f"[{match.group(1)}:{match.group(2)}]"
    out = []
    for line in rendered.splitlines():
        match = _COUNTED_RULE.match(line)
        found = _HASH.search(match.group(3)) if match is not None else None
        if match is not None and found is not None and match.group(4) not in reset_chains:
            counter = counters.get((match.group(4), found.group(1)), "[0:0]")
            line = f"{counter} {match.group(3)}"
        out.append(line)
    return "\n".join(out) + "\n"
