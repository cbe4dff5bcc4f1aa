"""A felix-shaped ``filter`` table for a lab node, in ``iptables-restore`` form.

Real felix is not available in the lab, so this renders what it would program for a few
pods and policies, following the rule sequences felix writes (``endpointIptablesChain`` and
``policy.go``), for two layouts:

* ``Layout.V3_27`` (felix v3.22-v3.27): mark clear ``0x0/0x10000``, ``Start of policies``
  clears the pass bit, policy jumps each followed by ``Return if policy accepted``, then
  ``Drop if no policies passed packet``; a deny rule is a plain ``-j DROP``.
* ``Layout.V3_30`` (felix v3.30-v3.31): combined clear ``0x0/0x30000``, ``Start of tier
  default``, ``End of tier default. Drop if no policies passed packet``; a deny rule sets the
  drop bit ``0x40000`` and the next rule drops on it.

Both send pod traffic through ``FORWARD -> cali-FORWARD -> cali-from-wl-dispatch /
cali-to-wl-dispatch -> cali-fw-<iface> / cali-tw-<iface>``, then profiles (``kns.<ns>``,
which allows everything).  Chain names use felix's length-limited hash of the policy's
stored name (``<ns>/default.<name>`` for v3.27, ``default/<ns>/default.<name>`` for v3.30).
Every rule carries a ``cali:<16 chars>`` hash comment chained through its chain, as felix's
are.  All counters start at zero.  The text is what ``iptables-save`` prints back, so a
restore/save round trip reproduces it modulo the header and counter values.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from calico_accountant.felix.naming import length_limited_id

__all__ = [
    "ACCEPT_MARK",
    "DROP_MARK",
    "PASS_MARK",
    "FelixChain",
    "LabEndpoint",
    "LabPolicy",
    "LabPolicyGroup",
    "LabRule",
    "Layout",
    "PolicyEntry",
    "deny_target",
    "entry_chain_name",
    "filter_table_text",
    "forwarding_chains",
    "group_chain_name",
    "length_limited_id",
    "policy_chain",
    "policy_chain_name",
    "policy_entries",
    "profile_chain",
    "profile_chain_name",
    "render_filter_table",
    "verdict_rules",
]

ACCEPT_MARK = 0x10000
PASS_MARK = 0x20000
DROP_MARK = 0x40000


class Layout(enum.StrEnum):
    """Which felix generation's endpoint-chain layout to render."""

    V3_27 = "v3.27"
    V3_30 = "v3.30"


@dataclass(frozen=True, slots=True)
class LabRule:
    """One rule of a policy: a verdict for packets matching an optional protocol/port."""

    action: str
    """``allow``, ``deny``, ``pass`` or ``log``."""
    protocol: str | None = None
    """``tcp``, ``udp`` or ``icmp`` (rendered as ``ipv6-icmp`` in IPv6 tables); None: any."""
    dport: int | None = None

    def __post_init__(self) -> None:
        if self.action not in ("allow", "deny", "pass", "log"):
            raise ValueError(f"unknown action {self.action!r}")
        if self.dport is not None and self.protocol not in ("tcp", "udp"):
            raise ValueError("a destination port needs protocol tcp or udp")


@dataclass(frozen=True, slots=True)
class LabPolicy:
    """A namespaced Calico NetworkPolicy in the default tier."""

    namespace: str
    name: str
    ingress: tuple[LabRule, ...] = ()
    egress: tuple[LabRule, ...] = ()

    @property
    def stored_name(self) -> str:
        """The name felix sees: clientv3 stores Calico policies as ``default.<name>``."""
        return f"default.{self.name}"


@dataclass(frozen=True, slots=True)
class LabPolicyGroup:
    """Consecutive policies with the same selector, which felix v3.28+ renders as one
    shared ``cali-gi-``/``cali-go-`` chain that jumps to each member in turn."""

    selector: str
    policies: tuple[LabPolicy, ...]


PolicyEntry = LabPolicy | LabPolicyGroup


@dataclass(frozen=True, slots=True)
class LabEndpoint:
    """A workload endpoint: its interface and the policies (or groups) that apply, in order.

    Groups are rendered whatever the layout; felix only makes them from v3.28 on.
    """

    interface: str
    ingress_policies: tuple[PolicyEntry, ...] = ()
    egress_policies: tuple[PolicyEntry, ...] = ()
    profiles: tuple[str, ...] = ("kns.default",)


def policy_chain_name(policy: LabPolicy, direction: str, layout: Layout) -> str:
    """``cali-pi-``/``cali-po-`` chain of ``policy`` for ``direction`` (``ingress``/``egress``)."""
    prefix = "cali-pi-" if direction == "ingress" else "cali-po-"
    key = f"{policy.namespace}/{policy.stored_name}"
    if layout is Layout.V3_30:
        key = "default/" + key
    return length_limited_id(prefix, key)


def group_chain_name(group: LabPolicyGroup, direction: str, layout: Layout) -> str:
    """``cali-gi-``/``cali-go-`` + 20 characters of a SHA3-224 over the group (like felix's
    ``PolicyGroup.UniqueID``: selector, direction, member count and member ids)."""
    members = "|".join(policy_chain_name(policy, direction, layout) for policy in group.policies)
    digest = hashlib.sha3_224(
        f"{group.selector}|{direction}|{len(group.policies)}|{members}".encode()
    ).digest()
    prefix = "cali-gi-" if direction == "ingress" else "cali-go-"
    return prefix + base64.urlsafe_b64encode(digest).decode()[:20]


def entry_chain_name(entry: PolicyEntry, direction: str, layout: Layout) -> str:
    """The chain an endpoint chain jumps to for a policy or a group."""
    if isinstance(entry, LabPolicyGroup):
        return group_chain_name(entry, direction, layout)
    return policy_chain_name(entry, direction, layout)


def profile_chain_name(profile: str, direction: str) -> str:
    """``cali-pri-``/``cali-pro-`` chain of a profile."""
    return length_limited_id("cali-pri-" if direction == "ingress" else "cali-pro-", profile)


def _mark(bits: int) -> str:
    return f"{bits:#x}/{bits:#x}"


class FelixChain:
    """Rules of one chain with felix-style chained ``cali:`` hashes (shared by the lab and
    the demo renderers)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self._previous = name

    def add(self, body: str, *, prefix: str = "", comments: Sequence[str] = ()) -> None:
        """Append a rule: ``prefix`` holds -i/-o/-p, which iptables-save prints before the comments."""
        digest = hashlib.sha224(f"{self._previous}|{prefix}|{'|'.join(comments)}|{body}".encode()).digest()
        rule_hash = base64.urlsafe_b64encode(digest).decode()[:16]
        self._previous = rule_hash
        parts = [f"-A {self.name}"]
        if prefix:
            parts.append(prefix)
        parts.append(f'-m comment --comment "cali:{rule_hash}"')
        parts.extend(f'-m comment --comment "{comment}"' for comment in comments)
        if body:
            parts.append(body)
        self.lines.append(" ".join(parts))


def _protocol_match(rule: LabRule, family: int) -> tuple[str, str]:
    """(``-p`` part printed before the comments, match modules printed after them)."""
    if rule.protocol is None:
        return "", ""
    if rule.protocol == "icmp":
        return ("-p icmp" if family == 4 else "-p ipv6-icmp"), ""
    ports = f"-m multiport --dports {rule.dport} " if rule.dport is not None else ""
    return f"-p {rule.protocol}", ports


def deny_target(deny_action: str, family: int) -> str:
    if deny_action == "DROP":
        return "DROP"
    if deny_action == "REJECT":
        return "REJECT --reject-with " + (
            "icmp-port-unreachable" if family == 4 else "icmp6-port-unreachable"
        )
    raise ValueError(f"deny_action must be DROP or REJECT, not {deny_action!r}")


def policy_chain(policy: LabPolicy, direction: str, layout: Layout, family: int, deny: str) -> FelixChain:
    """The ``cali-pi-``/``cali-po-`` chain of ``policy`` (shared by workload and host endpoints)."""
    chain = FelixChain(policy_chain_name(policy, direction, layout))
    rules = policy.ingress if direction == "ingress" else policy.egress
    identity = [f"Policy {policy.namespace}/{policy.stored_name} {direction}"]
    rendered: list[tuple[str, str]] = []  # (-p part, matches and target)
    for index, rule in enumerate(rules):
        protocol, match = _protocol_match(rule, family)
        rendered.extend(
            verdict_rules(rule.action, protocol, match, layout, deny, last=index == len(rules) - 1)
        )
    if not rendered:
        chain.add("", comments=identity)
    for index, (protocol, body) in enumerate(rendered):
        chain.add(body, prefix=protocol, comments=identity if index == 0 else ())
    return chain


def profile_chain(profile: str, direction: str) -> FelixChain:
    """A profile's chain; the lab's profiles accept everything."""
    chain = FelixChain(profile_chain_name(profile, direction))
    chain.add(f"-j MARK --set-xmark {_mark(ACCEPT_MARK)}", comments=[f"Profile {profile} {direction}"])
    return chain


def _endpoint_chain(
    endpoint: LabEndpoint, direction: str, layout: Layout, family: int, deny: str
) -> FelixChain:
    name = ("cali-tw-" if direction == "ingress" else "cali-fw-") + endpoint.interface
    policies = endpoint.ingress_policies if direction == "ingress" else endpoint.egress_policies
    chain = FelixChain(name)
    verb = "Drop" if deny == "DROP" else "Reject"
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
        if family == 4:
            chain.add(
                "-j DROP",
                prefix="-p ipencap",
                comments=["Drop IPinIP encapped packets originating in workloads"],
            )
    if policies:
        start = "Start of tier default" if layout is Layout.V3_30 else "Start of policies"
        chain.add(f"-j MARK --set-xmark 0x0/{PASS_MARK:#x}", comments=[start])
        for entry in policies:
            chain.add(f"-m mark --mark 0x0/{PASS_MARK:#x} -j {entry_chain_name(entry, direction, layout)}")
            chain.add(
                f"-m mark --mark {_mark(ACCEPT_MARK)} -j RETURN", comments=["Return if policy accepted"]
            )
        end = f"{verb} if no policies passed packet"
        if layout is Layout.V3_30:
            end = "End of tier default. " + end
        chain.add(f"-m mark --mark 0x0/{PASS_MARK:#x} -j {deny}", comments=[end])
    for profile in endpoint.profiles:
        chain.add(f"-j {profile_chain_name(profile, direction)}")
        chain.add(f"-m mark --mark {_mark(ACCEPT_MARK)} -j RETURN", comments=["Return if profile accepted"])
    chain.add(f"-j {deny}", comments=[f"{verb} if no profiles matched"])
    return chain


def _group_chain(group: LabPolicyGroup, direction: str, layout: Layout) -> FelixChain:
    """Blocks of five jumps; later jumps in a block need both verdict bits clear, and a
    ``Return on verdict`` rule separates blocks (felix ``policyGroupChain``)."""
    chain = FelixChain(group_chain_name(group, direction, layout))
    both = ACCEPT_MARK | PASS_MARK
    for index, policy in enumerate(group.policies):
        target = policy_chain_name(policy, direction, layout)
        if index % 5 == 0:
            if index:
                chain.add(f"-m mark ! --mark 0x0/{both:#x} -j RETURN", comments=["Return on verdict"])
            chain.add(f"-j {target}")
        else:
            chain.add(f"-m mark --mark 0x0/{both:#x} -j {target}")
    return chain


def policy_entries(entries: Iterable[PolicyEntry]) -> list[LabPolicy]:
    """Every policy of ``entries``, group members expanded, first occurrence kept."""
    seen: dict[LabPolicy, None] = {}
    for entry in entries:
        for policy in entry.policies if isinstance(entry, LabPolicyGroup) else (entry,):
            seen.setdefault(policy, None)
    return list(seen)


def render_filter_table(
    endpoints: Sequence[LabEndpoint], layout: Layout, *, family: int = 4, deny_action: str = "DROP"
) -> str:
    """The whole ``*filter`` table for ``endpoints``, zero counters, ready for ``iptables-restore -c``.

    ``deny_action`` is felix's ``FilterDenyAction``: ``REJECT`` (v3.26+) makes deny rules,
    the tier drop and the profile drop reject instead, with ``Reject if ...`` markers.
    """
    if family not in (4, 6):
        raise ValueError(f"family must be 4 or 6, not {family}")
    deny = deny_target(deny_action, family)
    chains = forwarding_chains([endpoint.interface for endpoint in endpoints])
    for endpoint in endpoints:
        chains.append(_endpoint_chain(endpoint, "egress", layout, family, deny))
        chains.append(_endpoint_chain(endpoint, "ingress", layout, family, deny))
    for direction in ("ingress", "egress"):
        entries = [
            entry
            for endpoint in endpoints
            for entry in (endpoint.ingress_policies if direction == "ingress" else endpoint.egress_policies)
        ]
        for group in dict.fromkeys(entry for entry in entries if isinstance(entry, LabPolicyGroup)):
            chains.append(_group_chain(group, direction, layout))
        for policy in policy_entries(entries):
            chains.append(policy_chain(policy, direction, layout, family, deny))
    profiles = dict.fromkeys(profile for endpoint in endpoints for profile in endpoint.profiles)
    for profile in profiles:
        chains.append(profile_chain(profile, "ingress"))
        chains.append(profile_chain(profile, "egress"))
    return filter_table_text(chains)


def verdict_rules(
    action: str, prefix: str, match: str, layout: Layout, deny: str = "DROP", *, last: bool = False
) -> list[tuple[str, str]]:
    """The (prefix, matches and target) rules felix renders for one policy rule's action.

    ``prefix`` holds -s/-p (printed before the comments), ``match`` the rest of the
    matches with a trailing space; ``last`` is whether the rule ends the chain (felix
    strips a RETURN that would).  v3.30 renders a deny as the drop mark then a guarded drop.
    """
    if action in ("allow", "pass"):
        bit = ACCEPT_MARK if action == "allow" else PASS_MARK
        rules = [(prefix, f"{match}-j MARK --set-xmark {_mark(bit)}")]
        if not last:
            rules.append(("", f"-m mark --mark {_mark(bit)} -j RETURN"))
        return rules
    if action == "deny":
        if layout is Layout.V3_30:
            return [
                (prefix, f"{match}-j MARK --set-xmark {_mark(DROP_MARK)}"),
                ("", f"-m mark --mark {_mark(DROP_MARK)} -j {deny}"),
            ]
        return [(prefix, f"{match}-j {deny}")]
    return [(prefix, f'{match}-j LOG --log-prefix "calico-packet: " --log-level 5')]


def forwarding_chains(interfaces: Sequence[str]) -> list[FelixChain]:
    """FORWARD -> cali-FORWARD -> the two dispatch chains, with a goto per workload
    interface and felix's ``Unknown interface`` drop; endpoint chains come after them."""
    forward = FelixChain("FORWARD")
    forward.add("-j cali-FORWARD")
    forward.add(
        f"-m mark --mark {_mark(ACCEPT_MARK)} -j ACCEPT", comments=["Policy explicitly accepted packet."]
    )
    cali_forward = FelixChain("cali-FORWARD")
    cali_forward.add(f"-j MARK --set-xmark 0x0/{0xE0000:#x}")
    cali_forward.add("-j cali-from-wl-dispatch", prefix="-i cali+")
    cali_forward.add("-j cali-to-wl-dispatch", prefix="-o cali+")
    from_dispatch = FelixChain("cali-from-wl-dispatch")
    to_dispatch = FelixChain("cali-to-wl-dispatch")
    for interface in interfaces:
        from_dispatch.add(f"-g cali-fw-{interface}", prefix=f"-i {interface}")
        to_dispatch.add(f"-g cali-tw-{interface}", prefix=f"-o {interface}")
    from_dispatch.add("-j DROP", comments=["Unknown interface"])
    to_dispatch.add("-j DROP", comments=["Unknown interface"])
    return [forward, cali_forward, from_dispatch, to_dispatch]


_BUILT_IN = frozenset({"INPUT", "FORWARD", "OUTPUT"})


def filter_table_text(chains: Sequence[FelixChain]) -> str:
    """The ``*filter`` table of ``chains`` as ``iptables-restore -c`` takes it, zero counters."""
    names = [chain.name for chain in chains]
    if len(set(names)) != len(names):
        raise ValueError("two chains got the same name")
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f":{chain.name} - [0:0]" for chain in chains if chain.name not in _BUILT_IN]
    lines += [f"[0:0] {line}" for chain in chains for line in chain.lines]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
