"""A felix-faithful filter-table generator: the parser's independent test oracle.

It renders a Calico node's ``filter`` table the way felix does for a given Calico
version family ("layout"), and pushes simulated traffic through the rendered rules with
a tiny iptables interpreter, so every counter in the text is consistent by construction
(jump rules, RETURNs, MARKs, NFLOG, drops, and the shared policy and group chains summed
across endpoints).  The records the parser must recover are computed separately, from
what each flow *means* at the policy level (which policy or profile made which verdict),
not by reading counters back.  Rendering asserts that both views agree for every flow, so
a generator bug shows up as an ``AssertionError`` here rather than as a parser "failure".

Nothing here imports ``node_agent``: the generator must stay an independent reading of
felix's rule rendering (``felix/rules/endpoints.go`` and ``policy.go`` per release); only
the record contract in ``calico_accountant.records`` is shared.

Layouts (:data:`LAYOUTS`):

========  ===========================================================================
``v2``    felix 2.x/3.0.x: marks 0x1000000/0x2000000, ``Start of policies``, no
          identity comments, profiles ``k8s_ns.<ns>``
``v3.0``  v3.1-v3.21: marks 0x10000/0x20000, ``Start of policies``, no identity comments
``v3.27`` identity comments ``Policy <ns>/<stored> ingress``, REJECT mode, encap drops
``v3.28`` no start marker, combined 0x0/0x30000 clear, policy groups ``cali-gi-``/``cali-go-``
``v3.29`` tiers (``Start of tier <t>``), tiered chain names, ANP tier without drop
``v3.30`` ``End of tier <t>. Drop if ...``, deny = MARK 0x40000 then a guarded DROP,
          NFLOG rules (flow logs), tiers with ``defaultAction: Pass``
``v3.32`` ``<Kind> ns/name ingress`` comments, ``cali-pi-np/ns/name`` chain names
========  ===========================================================================

Options (:class:`RenderOptions`): IPv4/IPv6, counter form (``[p:b]`` prefix, ``-c p b``
inline, none), framing (``*filter`` ... ``COMMIT`` or ``-P``/``-N``), DROP/REJECT, flow
logs, comment order and quoting, chain order, noise chains, other tables.

Public API: :func:`render` (text + expected records + expected diagnostics),
:func:`render_restore` (the same in ``iptables-restore -c`` form), :func:`build_model`
(a random realistic node), :func:`sized_model` (a node of a given size, for benchmarks),
:func:`node_models` (a hypothesis strategy), the model dataclasses and
:func:`length_limited_id` (felix's chain-name hash).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from calico_accountant.records import CounterKey, CounterRecord, Direction, Kind, RuleAction

__all__ = [
    "LAYOUTS",
    "Action",
    "CommentOrder",
    "CounterForm",
    "Endpoint",
    "Framing",
    "Match",
    "NodeModel",
    "Policy",
    "PolicyRule",
    "Profile",
    "RenderOptions",
    "RenderedTable",
    "Tier",
    "build_model",
    "length_limited_id",
    "nft_chain_names",
    "node_models",
    "render",
    "render_restore",
    "sized_model",
]

MAX_CHAIN_NAME = 28
"""``MaxChainNameLength`` in felix's iptables table."""

LAYOUTS: tuple[str, ...] = ("v2", "v3.0", "v3.27", "v3.28", "v3.29", "v3.30", "v3.32")


# --------------------------------------------------------------------------------------
# Layout traits: what changed between felix versions (dataplane reference §2.2-§2.4)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Traits:
    accept: int
    pass_: int
    drop: int
    """The v3.30+ drop bit (deny = MARK drop then a guarded DROP); 0 when deny is one rule."""
    start_of_policies: bool
    combined_clear: bool
    tiers: bool
    end_of_tier: bool
    groups: bool
    identity: Literal["none", "policy", "kind"]
    naming: Literal["v2", "v3.0", "tiered", "kind"]
    reject_ok: bool
    flow_logs_ok: bool
    encap_rules: bool
    pass_tiers_ok: bool
    strip_trailing_return: bool
    profile_ns_prefix: str


_DEFAULT_MARKS = {"accept": 0x10000, "pass_": 0x20000}

_TRAITS: dict[str, _Traits] = {
    "v2": _Traits(
        accept=0x1000000,
        pass_=0x2000000,
        drop=0,
        start_of_policies=True,
        combined_clear=False,
        tiers=False,
        end_of_tier=False,
        groups=False,
        identity="none",
        naming="v2",
        reject_ok=False,
        flow_logs_ok=False,
        encap_rules=False,
        pass_tiers_ok=False,
        strip_trailing_return=False,
        profile_ns_prefix="k8s_ns.",
    ),
    "v3.0": _Traits(
        **_DEFAULT_MARKS,
        drop=0,
        start_of_policies=True,
        combined_clear=False,
        tiers=False,
        end_of_tier=False,
        groups=False,
        identity="none",
        naming="v3.0",
        reject_ok=False,
        flow_logs_ok=False,
        encap_rules=False,
        pass_tiers_ok=False,
        strip_trailing_return=False,
        profile_ns_prefix="kns.",
    ),
    "v3.27": _Traits(
        **_DEFAULT_MARKS,
        drop=0,
        start_of_policies=True,
        combined_clear=False,
        tiers=False,
        end_of_tier=False,
        groups=False,
        identity="policy",
        naming="v3.0",
        reject_ok=True,
        flow_logs_ok=False,
        encap_rules=True,
        pass_tiers_ok=False,
        strip_trailing_return=True,
        profile_ns_prefix="kns.",
    ),
    "v3.28": _Traits(
        **_DEFAULT_MARKS,
        drop=0,
        start_of_policies=False,
        combined_clear=True,
        tiers=False,
        end_of_tier=False,
        groups=True,
        identity="policy",
        naming="v3.0",
        reject_ok=True,
        flow_logs_ok=False,
        encap_rules=True,
        pass_tiers_ok=False,
        strip_trailing_return=True,
        profile_ns_prefix="kns.",
    ),
    "v3.29": _Traits(
        **_DEFAULT_MARKS,
        drop=0,
        start_of_policies=False,
        combined_clear=True,
        tiers=True,
        end_of_tier=False,
        groups=True,
        identity="policy",
        naming="tiered",
        reject_ok=True,
        flow_logs_ok=False,
        encap_rules=True,
        pass_tiers_ok=False,
        strip_trailing_return=True,
        profile_ns_prefix="kns.",
    ),
    "v3.30": _Traits(
        **_DEFAULT_MARKS,
        drop=0x40000,
        start_of_policies=False,
        combined_clear=True,
        tiers=True,
        end_of_tier=True,
        groups=True,
        identity="policy",
        naming="tiered",
        reject_ok=True,
        flow_logs_ok=True,
        encap_rules=True,
        pass_tiers_ok=True,
        strip_trailing_return=True,
        profile_ns_prefix="kns.",
    ),
    "v3.32": _Traits(
        **_DEFAULT_MARKS,
        drop=0x40000,
        start_of_policies=False,
        combined_clear=True,
        tiers=True,
        end_of_tier=True,
        groups=True,
        identity="kind",
        naming="kind",
        reject_ok=True,
        flow_logs_ok=True,
        encap_rules=True,
        pass_tiers_ok=True,
        strip_trailing_return=True,
        profile_ns_prefix="kns.",
    ),
}


def layout_traits(layout: str) -> _Traits:
    """The felix traits of one layout; raises ``KeyError`` for an unknown layout name."""
    return _TRAITS[layout]


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------

Action = Literal["allow", "deny", "pass", "log"]


@dataclass(frozen=True, slots=True)
class Match:
    """Match criteria of a policy rule, rendered per family.  All empty = matches every packet."""

    protocol: str = ""
    port: int = 0
    source: int = -1
    """Index of a source address in 169.254.0.0/16 (or 2001:db8::/32); -1 for none."""

    @property
    def empty(self) -> bool:
        return not self.protocol and self.source < 0

    def render(self, family: int) -> tuple[str, str]:
        """(the part iptables prints before ``-m`` matches, the ``-m`` part)."""
        pre: list[str] = []
        if self.source >= 0:
            if family == 4:
                pre.append(f"-s 169.254.{self.source // 256 % 256}.{self.source % 256}/32")
            else:
                pre.append(f"-s 2001:db8::{self.source:x}/128")
        post = ""
        if self.protocol:
            pre.append(f"-p {self.protocol}")
            if self.port:
                post = f"-m multiport --dports {self.port}"
        return " ".join(pre), post


@dataclass(frozen=True, slots=True)
class PolicyRule:
    action: Action
    match: Match = Match()


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    order: float
    default_pass: bool = False
    """Tier ``defaultAction: Pass`` (v3.30+): no ``End of tier`` drop rule is rendered."""


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    """The user-visible name; the stored name and chain name follow from the layout."""
    namespace: str
    """Empty for global policies."""
    kind: Literal["NetworkPolicy", "GlobalNetworkPolicy", "KubernetesNetworkPolicy"]
    selector: str
    """A label the policy selects, e.g. ``app=web`` (namespaced policies: within their namespace)."""
    tier: str = "default"
    order: float = 1000.0
    ingress: tuple[PolicyRule, ...] | None = None
    """None: the policy has no ingress type (no ``cali-pi-`` chain)."""
    egress: tuple[PolicyRule, ...] | None = None

    def rules(self, direction: Direction) -> tuple[PolicyRule, ...] | None:
        return self.ingress if direction is Direction.INGRESS else self.egress


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    ingress: tuple[PolicyRule, ...] = ()
    """Allow rules only (that is all Kubernetes profiles ever hold)."""
    egress: tuple[PolicyRule, ...] = ()

    def rules(self, direction: Direction) -> tuple[PolicyRule, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress


@dataclass(frozen=True, slots=True)
class Endpoint:
    interface: str
    namespace: str
    labels: frozenset[str]
    profiles: tuple[str, ...]
    admin_down: bool = False
    """Felix renders the endpoint's chains as the one rule ``Endpoint admin disabled`` (DROP)."""


CounterForm = Literal["prefix", "inline", "none"]
Framing = Literal["save", "list"]
CommentOrder = Literal["cali_first", "cali_last", "trailing"]


@dataclass(frozen=True, slots=True)
class RenderOptions:
    family: int = 4
    counter_form: CounterForm = "prefix"
    """``prefix``: ``[p:b] -A`` (iptables-save -c); ``inline``: ``-c p b`` before ``-j``
    (iptables -S -v / restore input); ``none``: no counters (iptables -S, iptables-save)."""
    framing: Framing = "save"
    """``save``: ``*filter``, ``:CHAIN`` declarations, ``COMMIT``; ``list``: ``-P``/``-N`` lines."""
    deny_action: Literal["DROP", "REJECT"] = "DROP"
    flow_logs: bool = False
    """NFLOG rules (v3.30+ with flow logs on)."""
    comment_order: CommentOrder = "cali_first"
    quote_all: bool = False
    """Quote every comment (old iptables); else only those not solely ``[A-Za-z0-9_-]``."""
    chain_order: Literal["sorted", "creation", "shuffled"] = "sorted"
    """``sorted``: iptables-legacy's order; ``creation``: the order felix created them
    (what the nft backend prints); ``shuffled``: any order at all (fixed by ``order_seed``)."""
    order_seed: int = 0
    noise: bool = True
    """Non-Calico chains (KUBE-*, DOCKER), dispatch chains and cali-FORWARD."""
    other_tables: bool = False
    """A ``*nat`` table before and a ``*mangle`` table after ``*filter`` (save framing only)."""
    flow_seed: int = 0
    flows_per_direction: int = 3
    big_counters: bool = False
    """Sometimes draw packet counts near 2**40 (sums stay far below 2**64)."""


@dataclass(frozen=True, slots=True)
class NodeModel:
    layout: str
    tiers: tuple[Tier, ...]
    policies: tuple[Policy, ...]
    profiles: tuple[Profile, ...]
    endpoints: tuple[Endpoint, ...]
    options: RenderOptions = RenderOptions()
    unreferenced: tuple[str, ...] = ()
    """Names of policies whose chains are rendered even though no endpoint uses them."""

    def with_options(self, **changes: Any) -> NodeModel:
        return replace(self, options=replace(self.options, **changes))


@dataclass(frozen=True, slots=True)
class RenderedTable:
    text: str
    expected: list[CounterRecord]
    expected_diagnostics: Counter[str]
    """Diagnostics the parser must report for this table (e.g. ``deny_not_exact``)."""
    family: int
    rule_lines: int
    omitted_denies: tuple[CounterKey, ...] = ()
    """The POLICY_DENY keys left out because the deny cannot be made exact."""
    flows: int = 0


# --------------------------------------------------------------------------------------
# Naming (dataplane reference §1)
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)
def length_limited_id(prefix: str, suffix: str, max_len: int = MAX_CHAIN_NAME) -> str:
    """Felix's ``GetLengthLimitedID``: hash the suffix when the name would be too long."""
    if not suffix:
        suffix = "_"
    total = len(prefix) + len(suffix)
    if total > max_len or (total == max_len and suffix.startswith("_")):
        digest = base64.urlsafe_b64encode(hashlib.sha256(suffix.encode()).digest()).decode().rstrip("=")
        return prefix + "_" + digest[: max_len - 1 - len(prefix)]
    return prefix + suffix


_KIND_SHORT = {"NetworkPolicy": "np", "GlobalNetworkPolicy": "gnp", "KubernetesNetworkPolicy": "knp"}


def _stored_name(policy: Policy, traits: _Traits) -> str:
    if traits.naming == "kind":
        return policy.name
    if policy.kind == "KubernetesNetworkPolicy":
        return "knp.default." + policy.name
    if traits.naming == "v2":
        return policy.name
    if traits.naming == "tiered":
        return f"{policy.tier}.{policy.name}"
    return "default." + policy.name


def _hashed_suffix(policy: Policy, traits: _Traits) -> str:
    stored = _stored_name(policy, traits)
    scoped = f"{policy.namespace}/{stored}" if policy.namespace else stored
    if traits.naming == "kind":
        return f"{_KIND_SHORT[policy.kind]}/{scoped}"
    if traits.naming == "tiered":
        return f"{policy.tier}/{scoped}"
    return scoped


def _policy_chain(policy: Policy, direction: Direction, traits: _Traits) -> str:
    prefix = "cali-pi-" if direction is Direction.INGRESS else "cali-po-"
    return length_limited_id(prefix, _hashed_suffix(policy, traits))


def _identity_comment(policy: Policy, direction: Direction, traits: _Traits) -> str:
    if traits.identity == "none":
        return ""
    scoped_name = policy.name if traits.identity == "kind" else _stored_name(policy, traits)
    scoped = f"{policy.namespace}/{scoped_name}" if policy.namespace else scoped_name
    word = "Policy" if traits.identity == "policy" else policy.kind
    return f"{word} {scoped} {direction.value}"


def _profile_chain(profile: str, direction: Direction) -> str:
    return length_limited_id("cali-pri-" if direction is Direction.INGRESS else "cali-pro-", profile)


def _group_chain(tier: str, selector: str, direction: Direction, member_ids: Sequence[str]) -> str:
    """Felix's ``PolicyGroup.UniqueID``: SHA3-224 over tier, selector, direction and members,
    base64url, 20 characters (irreversible: the parser must read the members from the chain)."""
    material = "".join(
        f"{part}\n" for part in (tier, selector, direction.value, str(len(member_ids)), *member_ids)
    )
    uid = base64.urlsafe_b64encode(hashlib.sha3_224(material.encode()).digest()).decode()[:20]
    return ("cali-gi-" if direction is Direction.INGRESS else "cali-go-") + uid


def _nflog_prefix(text: str) -> str:
    return text[:63]


# --------------------------------------------------------------------------------------
# Rendered rules (an intermediate form that is both printed and interpreted)
# --------------------------------------------------------------------------------------

_OP_NONE, _OP_ACCEPT, _OP_DROP, _OP_RETURN, _OP_JUMP, _OP_GOTO, _OP_MARK = range(7)


@dataclass(slots=True)
class _Rule:
    """One rendered rule: its text parts, what the interpreter needs, and its counters."""

    pre: str
    comments: list[str]
    post: str
    target: str
    op: int
    arg: Any = None
    crit: Any = None
    """A key that must be in the flow's match set; None = no criteria."""
    mark: tuple[int, int, bool] | None = None
    """``-m mark [!] --mark value/mask`` as (value, mask, negated)."""
    goto: bool = False
    hash: str = ""
    packets: int = 0
    bytes: int = 0


def _mark_match(value: int, mask: int, negated: bool = False) -> str:
    bang = "! " if negated else ""
    return f"-m mark {bang}--mark {value:#x}/{mask:#x}"


def _set_mark(value: int, mask: int) -> str:
    return f"MARK --set-xmark {value:#x}/{mask:#x}"


# --------------------------------------------------------------------------------------
# Per-endpoint policy layout
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """One jump of a tier in an endpoint chain: a single policy or a policy group."""

    chain: str
    members: tuple[Policy, ...]
    group: bool
    member_chains: tuple[str, ...]
    """The policy chain of each member, in order."""


@dataclass(frozen=True, slots=True)
class _Section:
    tier: Tier
    entries: tuple[_Entry, ...]
    has_pass: bool
    """Whether any policy of this section has a pass rule (in this direction)."""


def _applies(policy: Policy, endpoint: Endpoint) -> bool:
    if policy.namespace and policy.namespace != endpoint.namespace:
        return False
    return policy.selector in endpoint.labels


def _selector_key(policy: Policy) -> str:
    scope = f"projectcalico.org/namespace == '{policy.namespace}' && " if policy.namespace else ""
    return scope + policy.selector


def _sections(model: NodeModel, endpoint: Endpoint, direction: Direction, traits: _Traits) -> list[_Section]:
    tiers = sorted(model.tiers, key=lambda t: (t.order, t.name))
    sections: list[_Section] = []
    for tier in tiers:
        applicable = sorted(
            (
                p
                for p in model.policies
                if p.tier == tier.name and p.rules(direction) is not None and _applies(p, endpoint)
            ),
            key=lambda p: (p.order, p.namespace, p.name),
        )
        if not applicable:
            continue
        runs: list[list[Policy]] = []
        for policy in applicable:
            if traits.groups and runs and _selector_key(runs[-1][0]) == _selector_key(policy):
                runs[-1].append(policy)
            else:
                runs.append([policy])
        entries: list[_Entry] = []
        for run in runs:
            chains = tuple(_policy_chain(p, direction, traits) for p in run)
            if len(run) == 1:
                entries.append(_Entry(chains[0], (run[0],), False, chains))
            else:
                ids = [_hashed_suffix(p, traits) for p in run]
                entries.append(
                    _Entry(
                        _group_chain(tier.name, _selector_key(run[0]), direction, ids),
                        tuple(run),
                        True,
                        chains,
                    )
                )
        sections.append(_Section(tier, tuple(entries), any(_has_pass(p, direction) for p in applicable)))
    return sections


# --------------------------------------------------------------------------------------
# The renderer
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _EndpointSlots:
    """Where one endpoint direction's record rules ended up, for the expectations."""

    chain: str
    entries: list[tuple[str, _Entry, _Rule, _Rule, _Rule | None]] = field(default_factory=list)
    """Per policy/group jump: (tier, entry, jump rule, its RETURN, the rule after the RETURN)."""
    tier_drops: dict[str, _Rule] = field(default_factory=dict)
    profile_returns: list[tuple[str, _Rule]] = field(default_factory=list)
    profile_drop: _Rule | None = None
    admin_drop: _Rule | None = None
    """An admin-down endpoint's only rule (then nothing else is set)."""


class _Builder:
    def __init__(self, model: NodeModel) -> None:
        self.model = model
        self.opts = model.options
        self.traits = _TRAITS[model.layout]
        self.family = self.opts.family
        self.chains: dict[str, list[_Rule]] = {}
        self.policy_chains: dict[str, tuple[Policy, Direction]] = {}
        self.policy_verdicts: dict[str, list[tuple[int, Action, _Rule]]] = {}
        self.profile_by_name = {p.name: p for p in model.profiles}
        self.policy_by_name = {p.name: p for p in model.policies}
        if self.opts.deny_action == "REJECT" and self.traits.reject_ok:
            icmp = "icmp-port-unreachable" if self.family == 4 else "icmp6-port-unreachable"
            self.deny_target = f"REJECT --reject-with {icmp}"
            self.deny_word = "Reject"
        else:
            self.deny_target = "DROP"
            self.deny_word = "Drop"
        self.flow_logs = self.opts.flow_logs and self.traits.flow_logs_ok

    # -- chains ------------------------------------------------------------------------

    def chain(self, name: str) -> list[_Rule]:
        assert len(name) <= MAX_CHAIN_NAME, name
        return self.chains.setdefault(name, [])

    def policy_chain(self, policy: Policy, direction: Direction) -> str:
        name = _policy_chain(policy, direction, self.traits)
        if name in self.chains:
            return name
        rules = self.chain(name)
        t = self.traits
        verdicts: list[tuple[int, Action, _Rule]] = []
        policy_rules = policy.rules(direction) or ()
        log_id = (
            _stored_name(policy, t)
            if not policy.namespace
            else f"{policy.namespace}/{_stored_name(policy, t)}"
        )
        letter = "I" if direction is Direction.INGRESS else "E"
        for index, rule in enumerate(policy_rules):
            pre, post = rule.match.render(self.family)
            crit = None if rule.match.empty else (name, index)
            if rule.action in ("allow", "pass"):
                bit = t.accept if rule.action == "allow" else t.pass_
                verdict = _Rule(pre, [], post, _set_mark(bit, bit), _OP_MARK, (bit, bit), crit)
                rules.append(verdict)
                if self.flow_logs:
                    code = "A" if rule.action == "allow" else "P"
                    prefix = _nflog_prefix(f"{code}P{letter}{index}|{log_id}")
                    rules.append(self._nflog(prefix, (bit, bit, False)))
                rules.append(
                    _Rule("", [], _mark_match(bit, bit), "RETURN", _OP_RETURN, mark=(bit, bit, False))
                )
            elif rule.action == "deny":
                if t.drop:
                    verdict = _Rule(
                        pre, [], post, _set_mark(t.drop, t.drop), _OP_MARK, (t.drop, t.drop), crit
                    )
                    rules.append(verdict)
                    if self.flow_logs:
                        rules.append(
                            self._nflog(_nflog_prefix(f"DP{letter}{index}|{log_id}"), (t.drop, t.drop, False))
                        )
                    rules.append(
                        _Rule(
                            "",
                            [],
                            _mark_match(t.drop, t.drop),
                            self.deny_target,
                            _OP_DROP,
                            mark=(t.drop, t.drop, False),
                        )
                    )
                else:
                    verdict = _Rule(pre, [], post, self.deny_target, _OP_DROP, crit=crit)
                    rules.append(verdict)
            else:
                verdict = _Rule(
                    pre, [], post, 'LOG --log-prefix "calico-packet: " --log-level 5', _OP_NONE, crit=crit
                )
                rules.append(verdict)
            verdicts.append((index, rule.action, verdict))
        if t.strip_trailing_return and rules and rules[-1].op == _OP_RETURN:
            rules.pop()
        identity = _identity_comment(policy, direction, t)
        if identity:
            if not rules:
                rules.append(_Rule("", [], "", "", _OP_NONE))
            rules[0].comments.append(identity)
        self.policy_chains[name] = (policy, direction)
        self.policy_verdicts[name] = verdicts
        return name

    def _nflog(self, prefix: str, mark: tuple[int, int, bool]) -> _Rule:
        return _Rule(
            "",
            [],
            _mark_match(mark[0], mark[1], mark[2]),
            f"NFLOG --nflog-prefix {_quote(prefix, self.opts.quote_all)} --nflog-group 1 --nflog-size 80",
            _OP_NONE,
            mark=mark,
        )

    def group_chain(self, entry: _Entry, direction: Direction) -> None:
        if entry.chain in self.chains:
            return
        rules = self.chain(entry.chain)
        either = self.traits.accept | self.traits.pass_
        for index, member in enumerate(entry.members):
            target = self.policy_chain(member, direction)
            if index and index % 5 == 0:
                rules.append(
                    _Rule(
                        "",
                        ["Return on verdict"],
                        _mark_match(0, either, True),
                        "RETURN",
                        _OP_RETURN,
                        mark=(0, either, True),
                    )
                )
            if index % 5:
                rules.append(
                    _Rule("", [], _mark_match(0, either), target, _OP_JUMP, target, mark=(0, either, False))
                )
            else:
                rules.append(_Rule("", [], "", target, _OP_JUMP, target))

    def profile_chain(self, profile_name: str, direction: Direction) -> str:
        name = _profile_chain(profile_name, direction)
        if name in self.chains:
            return name
        rules = self.chain(name)
        t = self.traits
        profile = self.profile_by_name[profile_name]
        for index, rule in enumerate(profile.rules(direction)):
            pre, post = rule.match.render(self.family)
            crit = None if rule.match.empty else (name, index)
            rules.append(
                _Rule(pre, [], post, _set_mark(t.accept, t.accept), _OP_MARK, (t.accept, t.accept), crit)
            )
            rules.append(
                _Rule(
                    "",
                    [],
                    _mark_match(t.accept, t.accept),
                    "RETURN",
                    _OP_RETURN,
                    mark=(t.accept, t.accept, False),
                )
            )
        if t.strip_trailing_return and rules and rules[-1].op == _OP_RETURN:
            rules.pop()
        if t.identity != "none":
            if not rules:
                rules.append(_Rule("", [], "", "", _OP_NONE))
            rules[0].comments.append(f"Profile {profile_name} {direction.value}")
        return name

    def endpoint_chain(
        self, endpoint: Endpoint, direction: Direction
    ) -> tuple[_EndpointSlots, list[_Section]]:
        t = self.traits
        prefix = "cali-tw-" if direction is Direction.INGRESS else "cali-fw-"
        name = prefix + endpoint.interface
        slots = _EndpointSlots(name)
        rules = self.chain(name)
        if endpoint.admin_down:
            # endpointIptablesChain: an admin-down endpoint gets one rule, and no policy.
            slots.admin_drop = _Rule("", ["Endpoint admin disabled"], "", self.deny_target, _OP_DROP)
            rules.append(slots.admin_drop)
            return slots, []
        sections = _sections(self.model, endpoint, direction, t)
        rules.append(
            _Rule("", [], "-m conntrack --ctstate RELATED,ESTABLISHED", "ACCEPT", _OP_ACCEPT, crit="ct:est")
        )
        rules.append(
            _Rule("", [], "-m conntrack --ctstate INVALID", self.deny_target, _OP_DROP, crit="ct:inv")
        )
        clear = t.accept | t.pass_ if t.combined_clear else t.accept
        rules.append(_Rule("", [], "", _set_mark(0, clear), _OP_MARK, (0, clear)))
        if t.encap_rules and direction is Direction.EGRESS:
            rules.append(
                _Rule(
                    "-p udp",
                    [f"{self.deny_word} VXLAN encapped packets originating in workloads"],
                    "-m multiport --dports 4789",
                    self.deny_target,
                    _OP_DROP,
                    crit="encap:vxlan",
                )
            )
            if self.family == 4:
                rules.append(
                    _Rule(
                        "-p ipencap",
                        [f"{self.deny_word} IPinIP encapped packets originating in workloads"],
                        "",
                        self.deny_target,
                        _OP_DROP,
                        crit="encap:ipip",
                    )
                )
        if sections and t.start_of_policies:
            rules.append(_Rule("", ["Start of policies"], "", _set_mark(0, t.pass_), _OP_MARK, (0, t.pass_)))
        pending: list[tuple[str, _Entry, _Rule, _Rule]] = []

        def settle(next_rule: _Rule | None) -> None:
            for tier_name, entry, jump, ret in pending:
                slots.entries.append((tier_name, entry, jump, ret, next_rule))
            pending.clear()

        for section in sections:
            tier = section.tier
            if t.tiers:
                start = _Rule(
                    "", [f"Start of tier {tier.name}"], "", _set_mark(0, t.pass_), _OP_MARK, (0, t.pass_)
                )
                settle(start)
                rules.append(start)
            for entry in section.entries:
                if entry.group:
                    self.group_chain(entry, direction)
                else:
                    self.policy_chain(entry.members[0], direction)
                jump = _Rule(
                    "",
                    [],
                    _mark_match(0, t.pass_),
                    entry.chain,
                    _OP_JUMP,
                    entry.chain,
                    mark=(0, t.pass_, False),
                )
                settle(jump)
                rules.append(jump)
                ret = _Rule(
                    "",
                    ["Return if policy accepted"],
                    _mark_match(t.accept, t.accept),
                    "RETURN",
                    _OP_RETURN,
                    mark=(t.accept, t.accept, False),
                )
                rules.append(ret)
                pending.append((tier.name, entry, jump, ret))
            has_drop = _tier_has_drop(tier, t)
            if has_drop:
                if self.flow_logs:
                    letter = "I" if direction is Direction.INGRESS else "E"
                    nflog = self._nflog(_nflog_prefix(f"DP{letter}|{tier.name}"), (0, t.pass_, False))
                    settle(nflog)
                    rules.append(nflog)
                text = f"{self.deny_word} if no policies passed packet"
                if t.end_of_tier:
                    text = f"End of tier {tier.name}. {text}"
                drop = _Rule(
                    "", [text], _mark_match(0, t.pass_), self.deny_target, _OP_DROP, mark=(0, t.pass_, False)
                )
                settle(drop)
                rules.append(drop)
                slots.tier_drops[tier.name] = drop
        for profile_name in endpoint.profiles:
            target = self.profile_chain(profile_name, direction)
            jump = _Rule("", [], "", target, _OP_JUMP, target)
            settle(jump)
            rules.append(jump)
            ret = _Rule(
                "",
                ["Return if profile accepted"],
                _mark_match(t.accept, t.accept),
                "RETURN",
                _OP_RETURN,
                mark=(t.accept, t.accept, False),
            )
            rules.append(ret)
            slots.profile_returns.append((target, ret))
        if self.flow_logs:
            letter = "I" if direction is Direction.INGRESS else "E"
            prefix = _quote(f"DR{letter}", self.opts.quote_all)
            nflog = _Rule(
                "", [], "", f"NFLOG --nflog-prefix {prefix} --nflog-group 1 --nflog-size 80", _OP_NONE
            )
            settle(nflog)
            rules.append(nflog)
        drop = _Rule("", [f"{self.deny_word} if no profiles matched"], "", self.deny_target, _OP_DROP)
        settle(drop)
        rules.append(drop)
        slots.profile_drop = drop
        return slots, sections


# --------------------------------------------------------------------------------------
# Traffic: flows, their policy-level fate, and the rule-level walk
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fate:
    kind: Literal[
        "established",
        "invalid",
        "encap",
        "accept",
        "deny",
        "tier_drop",
        "profile_accept",
        "profile_drop",
        "admin_down",
    ]
    section: int = -1
    entry: int = -1
    profile: int = -1
    verdict: tuple[str, int] | None = None
    """(policy chain, rule index) of the deciding policy rule."""
    logs: tuple[tuple[str, int], ...] = ()
    passes: tuple[tuple[str, int], ...] = ()


def _matched(rule: PolicyRule, chain: str, index: int, matches: frozenset[Any]) -> bool:
    return rule.match.empty or (chain, index) in matches


def _fate(
    sections: Sequence[_Section],
    profiles: Sequence[Profile],
    direction: Direction,
    matches: frozenset[Any],
    traits: _Traits,
    family: int,
) -> _Fate:
    """What felix's policy model decides for a flow: read from the model, not from rules."""
    if "ct:est" in matches:
        return _Fate("established")
    if "ct:inv" in matches:
        return _Fate("invalid")
    if (
        traits.encap_rules
        and direction is Direction.EGRESS
        and ("encap:vxlan" in matches or ("encap:ipip" in matches and family == 4))
    ):
        return _Fate("encap")
    logs: list[tuple[str, int]] = []
    passes: list[tuple[str, int]] = []
    for s_index, section in enumerate(sections):
        passed = False
        for e_index, entry in enumerate(section.entries):
            for policy, chain in zip(entry.members, entry.member_chains, strict=True):
                for r_index, rule in enumerate(policy.rules(direction) or ()):
                    if not _matched(rule, chain, r_index, matches):
                        continue
                    if rule.action == "log":
                        logs.append((chain, r_index))
                        continue
                    if rule.action == "allow":
                        return _Fate(
                            "accept",
                            s_index,
                            e_index,
                            verdict=(chain, r_index),
                            logs=tuple(logs),
                            passes=tuple(passes),
                        )
                    if rule.action == "deny":
                        return _Fate(
                            "deny",
                            s_index,
                            e_index,
                            verdict=(chain, r_index),
                            logs=tuple(logs),
                            passes=tuple(passes),
                        )
                    passes.append((chain, r_index))
                    passed = True
                    break
                if passed:
                    break
            if passed:
                break
        if passed:
            continue
        if _tier_has_drop(section.tier, traits):
            return _Fate("tier_drop", s_index, logs=tuple(logs), passes=tuple(passes))
    for p_index, profile in enumerate(profiles):
        chain = _profile_chain(profile.name, direction)
        for r_index, rule in enumerate(profile.rules(direction)):
            if _matched(rule, chain, r_index, matches):
                return _Fate("profile_accept", profile=p_index, logs=tuple(logs), passes=tuple(passes))
    return _Fate("profile_drop", logs=tuple(logs), passes=tuple(passes))


def _walk(
    chains: dict[str, list[_Rule]], start: str, matches: frozenset[Any], packets: int, nbytes: int
) -> tuple[str, int]:
    """Push packets through the rendered rules like netfilter does, counting every rule they match."""
    mark = 0
    stack: list[tuple[list[_Rule], int]] = []
    rules = chains[start]
    i = 0
    while True:
        if i >= len(rules):
            if not stack:
                return "return", mark
            rules, i = stack.pop()
            continue
        rule = rules[i]
        i += 1
        if rule.crit is not None and rule.crit not in matches:
            continue
        if rule.mark is not None:
            value, mask, negated = rule.mark
            if ((mark & mask) == value) == negated:
                continue
        rule.packets += packets
        rule.bytes += nbytes
        op = rule.op
        if op == _OP_NONE:
            continue
        if op == _OP_MARK:
            value, mask = rule.arg
            mark = (mark & ~mask) ^ value
        elif op == _OP_JUMP:
            stack.append((rules, i))
            rules = chains[rule.arg]
            i = 0
        elif op == _OP_GOTO:
            rules = chains[rule.arg]
            i = 0
        elif op == _OP_RETURN:
            if not stack:
                return "return", mark
            rules, i = stack.pop()
        elif op == _OP_ACCEPT:
            return "accept", mark
        else:
            return "drop", mark


def _draw_flow(
    rng: random.Random,
    sections: Sequence[_Section],
    profiles: Sequence[Profile],
    direction: Direction,
    traits: _Traits,
    big: bool,
) -> tuple[frozenset[Any], int, int]:
    roll = rng.random()
    matches: set[Any] = set()
    if roll < 0.08:
        matches.add("ct:est")
    elif roll < 0.12:
        matches.add("ct:inv")
    elif roll < 0.16 and direction is Direction.EGRESS:
        matches.add(rng.choice(["encap:vxlan", "encap:ipip"]))
    else:
        density = rng.choice([0.1, 0.3, 0.6])
        for section in sections:
            for entry in section.entries:
                for policy, chain in zip(entry.members, entry.member_chains, strict=True):
                    for r_index in range(len(policy.rules(direction) or ())):
                        if rng.random() < density:
                            matches.add((chain, r_index))
        for profile in profiles:
            chain = _profile_chain(profile.name, direction)
            for r_index in range(len(profile.rules(direction))):
                if rng.random() < 0.5:
                    matches.add((chain, r_index))
    packets = rng.randint(1, 2**40) if big and rng.random() < 0.3 else rng.randint(1, 40)
    return frozenset(matches), packets, packets * rng.randint(40, 1500)


# --------------------------------------------------------------------------------------
# Rule hashes and text
# --------------------------------------------------------------------------------------


def _rule_body(rule: _Rule) -> str:
    return " ".join(part for part in (rule.pre, "|".join(rule.comments), rule.post, rule.target) if part)


def _assign_hashes(chains: dict[str, list[_Rule]]) -> None:
    """Felix's chained rule hash: each depends on the chain, the previous hash and the rule."""
    for name, rules in chains.items():
        previous = name
        for rule in rules:
            digest = hashlib.sha224((previous + "\x00" + _rule_body(rule)).encode()).digest()
            rule.hash = base64.urlsafe_b64encode(digest).decode()[:16]
            previous = rule.hash


_BARE = re.compile(r"[A-Za-z0-9_-]+\Z")


def _quote(value: str, quote_all: bool) -> str:
    """iptables' ``xtables_save_string``: bare only when solely ``[A-Za-z0-9_-]``."""
    if not quote_all and _BARE.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rule_line(chain: str, rule: _Rule, opts: RenderOptions, with_hash: bool = True) -> str:
    comment_values = [f"cali:{rule.hash}"] if with_hash and rule.hash else []
    if opts.comment_order == "cali_last":
        comment_values = [*rule.comments, *comment_values]
    else:
        comment_values = [*comment_values, *rule.comments]
    comments = " ".join(f"-m comment --comment {_quote(c, opts.quote_all)}" for c in comment_values)
    parts = ["-A", chain, rule.pre]
    if opts.comment_order == "trailing":
        parts += [rule.post, comments]
    else:
        parts += [comments, rule.post]
    if opts.counter_form == "inline":
        parts.append(f"-c {rule.packets} {rule.bytes}")
    if rule.target:
        parts.append(("-g " if rule.goto else "-j ") + rule.target)
    line = " ".join(p for p in parts if p)
    if opts.counter_form == "prefix":
        return f"[{rule.packets}:{rule.bytes}] {line}"
    return line


# --------------------------------------------------------------------------------------
# render()
# --------------------------------------------------------------------------------------


def render(model: NodeModel) -> RenderedTable:
    """Render the model's filter table and the records a correct parser derives from it."""
    opts = model.options
    traits = _TRAITS[model.layout]
    family = opts.family
    builder = _Builder(model)
    rng = random.Random(f"{opts.flow_seed}/{family}")
    endpoint_views: list[tuple[Endpoint, Direction, _EndpointSlots, list[_Section]]] = []
    for endpoint in model.endpoints:
        for direction in (Direction.INGRESS, Direction.EGRESS):
            slots, sections = builder.endpoint_chain(endpoint, direction)
            endpoint_views.append((endpoint, direction, slots, sections))
    referenced_tier: dict[str, str] = {}
    for view in endpoint_views:
        for tier_name, entry, *_rest in view[2].entries:
            for member_chain in entry.member_chains:
                referenced_tier[member_chain] = tier_name
    for name in model.unreferenced:
        policy = builder.policy_by_name[name]
        for direction in (Direction.INGRESS, Direction.EGRESS):
            if policy.rules(direction) is not None:
                builder.policy_chain(policy, direction)

    # Traffic.
    accepted: Counter[tuple[str, int, int]] = Counter()  # (endpoint chain, section, entry) -> packets
    accepted_b: Counter[tuple[str, int, int]] = Counter()
    denied: Counter[tuple[str, int, int]] = Counter()
    denied_b: Counter[tuple[str, int, int]] = Counter()
    tier_dropped: Counter[tuple[str, int]] = Counter()
    tier_dropped_b: Counter[tuple[str, int]] = Counter()
    profile_acc: Counter[tuple[str, int]] = Counter()
    profile_acc_b: Counter[tuple[str, int]] = Counter()
    profile_dropped: Counter[str] = Counter()
    profile_dropped_b: Counter[str] = Counter()
    admin_dropped: Counter[str] = Counter()
    admin_dropped_b: Counter[str] = Counter()
    rule_hits: Counter[tuple[str, int]] = Counter()
    rule_hits_b: Counter[tuple[str, int]] = Counter()
    endpoint_totals: Counter[str] = Counter()
    endpoint_totals_b: Counter[str] = Counter()
    flows = 0
    for endpoint, direction, slots, sections in endpoint_views:
        profiles = [builder.profile_by_name[p] for p in endpoint.profiles]
        for _ in range(opts.flows_per_direction):
            matches, packets, nbytes = _draw_flow(
                rng, sections, profiles, direction, traits, opts.big_counters
            )
            flows += 1
            if endpoint.admin_down:
                fate = _Fate("admin_down")
            else:
                fate = _fate(sections, profiles, direction, matches, traits, family)
            outcome, mark = _walk(builder.chains, slots.chain, matches, packets, nbytes)
            _check(fate, outcome, mark, traits, slots.chain)
            endpoint_totals[slots.chain] += packets
            endpoint_totals_b[slots.chain] += nbytes
            ep = slots.chain
            for hit in (*fate.logs, *fate.passes, *((fate.verdict,) if fate.verdict else ())):
                rule_hits[hit] += packets
                rule_hits_b[hit] += nbytes
            if fate.kind == "accept":
                accepted[ep, fate.section, fate.entry] += packets
                accepted_b[ep, fate.section, fate.entry] += nbytes
            elif fate.kind == "deny":
                denied[ep, fate.section, fate.entry] += packets
                denied_b[ep, fate.section, fate.entry] += nbytes
            elif fate.kind == "tier_drop":
                tier_dropped[ep, fate.section] += packets
                tier_dropped_b[ep, fate.section] += nbytes
            elif fate.kind == "profile_accept":
                profile_acc[ep, fate.profile] += packets
                profile_acc_b[ep, fate.profile] += nbytes
            elif fate.kind == "profile_drop":
                profile_dropped[ep] += packets
                profile_dropped_b[ep] += nbytes
            elif fate.kind == "admin_down":
                admin_dropped[ep] += packets
                admin_dropped_b[ep] += nbytes

    # Noise and plumbing chains (after the traffic, so their counters can sum it).
    if opts.noise:
        _add_plumbing(builder, model, endpoint_totals, endpoint_totals_b, rng)
    _assign_hashes(builder.chains)

    # Expectations.
    expected: list[CounterRecord] = []
    omitted: list[CounterKey] = []
    for endpoint, direction, slots, sections in endpoint_views:
        ep = slots.chain
        iface = endpoint.interface
        if slots.admin_drop is not None:
            key = CounterKey(Kind.ENDPOINT_ADMIN_DROP, family, direction, iface)
            expected.append(
                CounterRecord(key, admin_dropped[ep], admin_dropped_b[ep], (slots.admin_drop.hash,))
            )
            continue
        # position of each entry within its section
        entry_pos: dict[int, tuple[int, int]] = {}
        for s_index, section in enumerate(sections):
            for e_index, entry in enumerate(section.entries):
                entry_pos[id(entry)] = (s_index, e_index)
        for tier_name, entry, jump, ret, next_rule in slots.entries:
            s_index, e_index = entry_pos[id(entry)]
            section = sections[s_index]
            key = CounterKey(
                Kind.POLICY_ACCEPT, family, direction, iface, entry.chain, _tier(tier_name, traits)
            )
            members = entry.member_chains if entry.group else ()
            comment = "" if entry.group else _identity_comment(entry.members[0], direction, traits)
            expected.append(
                CounterRecord(
                    key,
                    accepted[ep, s_index, e_index],
                    accepted_b[ep, s_index, e_index],
                    (ret.hash,),
                    comment,
                    members,
                )
            )
            deny_key = key._replace(kind=Kind.POLICY_DENY)
            entry_has_pass = any(_has_pass(m, direction) for m in entry.members)
            next_guarded = next_rule is not None and next_rule.mark == (0, traits.pass_, False)
            if entry_has_pass or (not next_guarded and section.has_pass):
                omitted.append(deny_key)
                continue
            ids = (jump.hash, ret.hash, next_rule.hash) if next_rule is not None else (jump.hash, ret.hash)
            expected.append(
                CounterRecord(
                    deny_key,
                    denied[ep, s_index, e_index],
                    denied_b[ep, s_index, e_index],
                    ids,
                    comment,
                    members,
                )
            )
        for s_index, section in enumerate(sections):
            drop = slots.tier_drops.get(section.tier.name)
            if drop is None:
                continue
            key = CounterKey(
                Kind.NO_POLICY_DROP, family, direction, iface, "", _tier(section.tier.name, traits)
            )
            expected.append(
                CounterRecord(key, tier_dropped[ep, s_index], tier_dropped_b[ep, s_index], (drop.hash,))
            )
        for p_index, (chain, ret) in enumerate(slots.profile_returns):
            key = CounterKey(Kind.PROFILE_ACCEPT, family, direction, iface, chain, "")
            expected.append(
                CounterRecord(key, profile_acc[ep, p_index], profile_acc_b[ep, p_index], (ret.hash,))
            )
        assert slots.profile_drop is not None
        key = CounterKey(Kind.NO_PROFILE_DROP, family, direction, iface, "", "")
        expected.append(
            CounterRecord(key, profile_dropped[ep], profile_dropped_b[ep], (slots.profile_drop.hash,))
        )
    for chain, (_policy, direction) in builder.policy_chains.items():
        tier = referenced_tier.get(chain, "")
        for index, action, verdict in builder.policy_verdicts[chain]:
            key = CounterKey(
                Kind.POLICY_RULE, family, direction, "", chain, tier, index, RuleAction(action).value
            )
            expected.append(
                CounterRecord(key, rule_hits[chain, index], rule_hits_b[chain, index], (verdict.hash,))
            )
    if opts.counter_form == "none":
        expected = [r._replace(packets=0, bytes=0) for r in expected]
    text, rule_lines = _text(builder, model)
    diagnostics: Counter[str] = Counter()
    if omitted:
        diagnostics["deny_not_exact"] = len(omitted)
    return RenderedTable(text, expected, diagnostics, family, rule_lines, tuple(omitted), flows)


NFT_MAX_CHAIN_NAME = 256
"""``knftables.NameLengthMax``: felix's nft policy and profile chains from v3.30."""


def nft_chain_names(model: NodeModel) -> dict[str, str]:
    """iptables chain name -> nftables chain name (layer prefix not included) of every
    policy and profile chain of the model: felix v3.30+ limits nft names to 256 characters,
    so they are practically never hashed (``PolicyChainName``/``ProfileChainName`` with
    ``nft=true``).  Group and endpoint chains keep their names.  v3.29's nftables tech
    preview still limited them to iptables' 28 characters: there every name is kept."""
    traits = _TRAITS[model.layout]
    names: dict[str, str] = {}
    if model.layout == "v3.29":
        return names
    for policy in model.policies:
        for direction in (Direction.INGRESS, Direction.EGRESS):
            prefix = "cali-pi-" if direction is Direction.INGRESS else "cali-po-"
            suffix = _hashed_suffix(policy, traits)
            names[length_limited_id(prefix, suffix)] = length_limited_id(prefix, suffix, NFT_MAX_CHAIN_NAME)
    for profile in model.profiles:
        for prefix in ("cali-pri-", "cali-pro-"):
            names[length_limited_id(prefix, profile.name)] = length_limited_id(
                prefix, profile.name, NFT_MAX_CHAIN_NAME
            )
    return names


def render_restore(model: NodeModel) -> RenderedTable:
    """The same table in a form ``iptables-restore -c`` (and ``ip6tables-restore -c``) accepts."""
    return render(model.with_options(framing="save", counter_form="prefix", other_tables=False))


def _tier(name: str, traits: _Traits) -> str:
    return name if traits.tiers else "default"


def _tier_has_drop(tier: Tier, traits: _Traits) -> bool:
    """Whether felix ends the tier with a drop: not for ``defaultAction: Pass`` tiers (v3.30+),
    nor for the AdminNetworkPolicy tier (v3.29+, whose end-of-tier action is pass)."""
    if not tier.default_pass:
        return True
    return not (traits.pass_tiers_ok or (traits.tiers and tier.name == "adminnetworkpolicy"))


def _has_pass(policy: Policy, direction: Direction) -> bool:
    return any(rule.action == "pass" for rule in policy.rules(direction) or ())


def _check(fate: _Fate, outcome: str, mark: int, traits: _Traits, chain: str) -> None:
    if fate.kind == "established":
        ok = outcome == "accept"
    elif fate.kind in ("accept", "profile_accept"):
        ok = outcome == "return" and bool(mark & traits.accept)
    else:
        ok = outcome == "drop"
    assert ok, f"generator bug in {chain}: fate {fate} but the rules said {outcome} mark={mark:#x}"


def _add_plumbing(
    builder: _Builder,
    model: NodeModel,
    totals: Counter[str],
    totals_b: Counter[str],
    rng: random.Random,
) -> None:
    """Dispatch chains, cali-FORWARD and some non-Calico chains, with consistent counters."""
    dispatch_out = builder.chain("cali-from-wl-dispatch")
    dispatch_in = builder.chain("cali-to-wl-dispatch")
    for endpoint in model.endpoints:
        fw = "cali-fw-" + endpoint.interface
        tw = "cali-tw-" + endpoint.interface
        dispatch_out.append(
            _Rule(
                f"-i {endpoint.interface}",
                [],
                "",
                fw,
                _OP_GOTO,
                fw,
                goto=True,
                packets=totals[fw],
                bytes=totals_b[fw],
            )
        )
        dispatch_in.append(
            _Rule(
                f"-o {endpoint.interface}",
                [],
                "",
                tw,
                _OP_GOTO,
                tw,
                goto=True,
                packets=totals[tw],
                bytes=totals_b[tw],
            )
        )
    unknown_p = rng.randint(0, 5)
    for chain in (dispatch_out, dispatch_in):
        chain.append(
            _Rule("", ["Unknown interface"], "", "DROP", _OP_DROP, packets=unknown_p, bytes=unknown_p * 60)
        )
    total_p = sum(totals.values()) + 2 * unknown_p
    total_b = sum(totals_b.values()) + 2 * unknown_p * 60
    forward = builder.chain("cali-FORWARD")
    either = builder.traits.accept | builder.traits.pass_
    forward.append(
        _Rule("", [], "", _set_mark(0, either), _OP_MARK, (0, either), packets=total_p, bytes=total_b)
    )
    forward.append(_Rule("", [], "", "cali-from-wl-dispatch", _OP_JUMP, packets=total_p, bytes=total_b))
    forward.append(_Rule("", [], "", "cali-to-wl-dispatch", _OP_JUMP, packets=total_p, bytes=total_b))
    builder.chain("FORWARD").append(
        _Rule("", ["cali:wUHhoiAYhphO9Mso"], "", "cali-FORWARD", _OP_JUMP, packets=total_p, bytes=total_b)
    )
    # Non-Calico noise: their comments are not cali: hashes (they get none), some unquoted.
    builder.chain("KUBE-FIREWALL").append(
        _Rule(
            "",
            ["kubernetes firewall for dropping marked packets"],
            "-m mark --mark 0x8000/0x8000",
            "DROP",
            _OP_DROP,
            packets=rng.randint(0, 3),
            bytes=rng.randint(0, 300),
        )
    )
    builder.chain("KUBE-SERVICES").append(
        _Rule(
            "-d 169.254.20.10/32 -p tcp",
            ["default/kubernetes_https-has_no-endpoints"],
            "-m tcp --dport 443",
            "REJECT --reject-with icmp-port-unreachable",
            _OP_DROP,
        )
        if builder.family == 4
        else _Rule(
            "-d 2001:db8::a/128 -p tcp",
            ["default/kubernetes_https-has_no-endpoints"],
            "-m tcp --dport 443",
            "REJECT --reject-with icmp6-port-unreachable",
            _OP_DROP,
        )
    )
    builder.chain("DOCKER")
    builder.chain("DOCKER-ISOLATION-STAGE-1").append(
        _Rule("", [], "", "RETURN", _OP_RETURN, packets=7, bytes=420)
    )


_NOISE_CHAINS = frozenset({"FORWARD", "KUBE-FIREWALL", "KUBE-SERVICES", "DOCKER", "DOCKER-ISOLATION-STAGE-1"})


def _text(builder: _Builder, model: NodeModel) -> tuple[str, int]:
    opts = model.options
    tool = "iptables-save" if opts.family == 4 else "ip6tables-save"
    builtin = ("INPUT", "FORWARD", "OUTPUT")
    user = [name for name in builder.chains if name not in builtin]
    if opts.chain_order == "sorted":
        user.sort()
    elif opts.chain_order == "shuffled":
        random.Random(opts.order_seed).shuffle(user)
    order = [*builtin, *user]
    out: list[str] = []
    builtin_counts = {"INPUT": (1234, 98765), "FORWARD": (0, 0), "OUTPUT": (1200, 87654)}
    if opts.framing == "save":
        if opts.other_tables:
            out += _nat_table(tool, opts)
        out.append(f"# Generated by {tool} v1.8.9 (nf_tables) on Wed Nov 25 12:00:00 2026")
        out.append("*filter")
        for name in builtin:
            p, b = builtin_counts[name] if opts.counter_form != "none" else (0, 0)
            out.append(f":{name} ACCEPT [{p}:{b}]")
        out.extend(f":{name} - [0:0]" for name in user)
    else:
        for name in builtin:
            if opts.counter_form == "inline":
                p, b = builtin_counts[name]
                out.append(f"-P {name} ACCEPT -c {p} {b}")
            else:
                out.append(f"-P {name} ACCEPT")
        out.extend(f"-N {name}" for name in user)
    rule_lines = 0
    for name in order:
        with_hash = name not in _NOISE_CHAINS
        for rule in builder.chains.get(name, ()):
            out.append(_rule_line(name, rule, opts, with_hash))
            rule_lines += 1
    if opts.framing == "save":
        out.append("COMMIT")
        out.append("# Completed on Wed Nov 25 12:00:00 2026")
        if opts.other_tables:
            out += [
                f"# Generated by {tool} v1.8.9 (nf_tables) on Wed Nov 25 12:00:00 2026",
                "*mangle",
                ":PREROUTING ACCEPT [10:1000]",
                ":cali-PREROUTING - [0:0]",
                '[10:1000] -A PREROUTING -m comment --comment "cali:6gwbT8clXdHdC1b1" -j cali-PREROUTING',
                "COMMIT",
                "# Completed on Wed Nov 25 12:00:00 2026",
            ]
    return "\n".join(out) + "\n", rule_lines


def _nat_table(tool: str, opts: RenderOptions) -> list[str]:
    lines = [
        f"# Generated by {tool} v1.8.9 (nf_tables) on Wed Nov 25 12:00:00 2026",
        "*nat",
        ":PREROUTING ACCEPT [235:17646]",
        ":POSTROUTING ACCEPT [2334:141645]",
        ":cali-POSTROUTING - [0:0]",
        ":cali-nat-outgoing - [0:0]",
        '[2334:141645] -A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING',
        '[2334:141645] -A cali-POSTROUTING -m comment --comment "cali:nYKhEzDlr11Jccal" -j cali-nat-outgoing',
        "COMMIT",
        "# Completed on Wed Nov 25 12:00:00 2026",
    ]
    if opts.counter_form != "prefix":
        lines = [line.split("] ", 1)[1] if line.startswith("[") else line for line in lines]
    return lines


# --------------------------------------------------------------------------------------
# Model builders
# --------------------------------------------------------------------------------------

_NAMESPACES = ("prod", "dev", "kube-system", "team-b")
_LABELS = ("app=web", "app=db", "role=api", "tier=frontend")
_WORDS = ("allow-web", "deny-all", "db-access", "allow-dns", "monitoring", "egress-lockdown")


def _interface(rng: random.Random, used: set[str]) -> str:
    while True:
        prefix = rng.choice(("cali", "cali", "azv", "eni"))
        name = prefix + "".join(
            rng.choice("0123456789abcdef") for _ in range(15 - len(prefix) - rng.randint(0, 1))
        )
        if name not in used:
            used.add(name)
            return name


def _rules(rng: random.Random, count: int, allow_pass: bool) -> tuple[PolicyRule, ...]:
    actions: list[Action] = ["allow", "allow", "allow", "deny", "deny", "log"]
    if allow_pass:
        actions.append("pass")
    out: list[PolicyRule] = []
    for _ in range(count):
        action = rng.choice(actions)
        if rng.random() < 0.2:
            match = Match()
        else:
            match = Match(
                protocol=rng.choice(("tcp", "udp", "")),
                port=rng.choice((53, 80, 443, 5432, 8080)),
                source=rng.randint(0, 3000) if rng.random() < 0.5 else -1,
            )
            if not match.protocol and match.source < 0:
                match = Match(source=rng.randint(0, 3000))
        out.append(PolicyRule(action, match))
    return tuple(out)


def build_model(
    rng: random.Random,
    layout: str,
    *,
    endpoints: int = 3,
    policies: int = 5,
    max_rules: int = 4,
    pass_rules: bool = True,
    options: RenderOptions = RenderOptions(),
) -> NodeModel:
    """A random but realistic node: namespaces, labels, tiers (v3.29+), policies, profiles, pods."""
    traits = _TRAITS[layout]
    tiers = [Tier("default", 1_000_000.0)]
    if traits.tiers:
        for name, order in (("security", 100.0), ("platform", 200.0)):
            if rng.random() < 0.6:
                tiers.append(Tier(name, order, default_pass=traits.pass_tiers_ok and rng.random() < 0.4))
        if rng.random() < 0.3:
            tiers.append(Tier("adminnetworkpolicy", 1000.0, default_pass=True))
    policy_list: list[Policy] = []
    names: set[str] = set()
    for index in range(policies):
        kind = rng.choice(
            ("NetworkPolicy", "NetworkPolicy", "GlobalNetworkPolicy", "KubernetesNetworkPolicy")
        )
        tier = "default" if kind == "KubernetesNetworkPolicy" else rng.choice(tiers).name
        base = rng.choice(_WORDS)
        name = f"{base}-{index}" if rng.random() < 0.7 else f"{base}-with-a-much-longer-name-{index}"
        names.add(name)
        types = rng.choice(("ingress", "egress", "both", "both"))
        ingress = _rules(rng, rng.randint(0, max_rules), pass_rules) if types != "egress" else None
        egress = _rules(rng, rng.randint(0, max_rules), pass_rules) if types != "ingress" else None
        policy_list.append(
            Policy(
                name=name,
                namespace="" if kind == "GlobalNetworkPolicy" else rng.choice(_NAMESPACES[:2]),
                kind=kind,  # type: ignore[arg-type]
                selector=rng.choice(_LABELS[:3]),
                tier=tier,
                order=float(rng.choice((10, 100, 100, 500))),
                ingress=ingress,
                egress=egress,
            )
        )
    ns_prefix = traits.profile_ns_prefix
    profiles = [
        Profile(ns_prefix + ns, (PolicyRule("allow"),), (PolicyRule("allow"),)) for ns in _NAMESPACES[:2]
    ]
    if layout != "v2":
        profiles.append(Profile("ksa.prod.default"))
        profiles.append(
            Profile(
                "ksa.dev.metrics-server-account",
                (PolicyRule("allow", Match(source=rng.randint(0, 3000))),),
                (PolicyRule("allow", Match(protocol="udp", port=53)),),
            )
        )
    endpoint_list: list[Endpoint] = []
    used: set[str] = set()
    for _ in range(endpoints):
        ns = rng.choice(_NAMESPACES[:2])
        labels = frozenset(label for label in _LABELS if rng.random() < 0.5)
        choice = rng.random()
        if choice < 0.1:
            endpoint_profiles: tuple[str, ...] = ()
        elif layout == "v2" or choice < 0.4:
            endpoint_profiles = (ns_prefix + ns,)
        else:
            sa = "ksa.prod.default" if ns == "prod" else "ksa.dev.metrics-server-account"
            endpoint_profiles = (sa, ns_prefix + ns) if rng.random() < 0.5 else (ns_prefix + ns, sa)
        endpoint_list.append(Endpoint(_interface(rng, used), ns, labels, endpoint_profiles))
    unreferenced: tuple[str, ...] = ()
    # Felix renders only policies local endpoints use; an extra chain stays realistic only
    # when the table still shows the accept bit (a profile return), as it always does on a node.
    if policy_list and any(e.profiles for e in endpoint_list) and rng.random() < 0.3:
        unreferenced = (rng.choice(policy_list).name,)
    # Drawn last, so the rest of a seed's model does not change: now and then an endpoint is
    # admin-down, when another one still shows felix's mark bits (a profile return).
    if len(endpoint_list) > 1 and rng.random() < 0.25:
        index = rng.randrange(len(endpoint_list))
        if any(e.profiles for i, e in enumerate(endpoint_list) if i != index):
            endpoint_list[index] = replace(endpoint_list[index], admin_down=True)
    return NodeModel(
        layout=layout,
        tiers=tuple(tiers),
        policies=tuple(policy_list),
        profiles=tuple(profiles),
        endpoints=tuple(endpoint_list),
        options=options,
        unreferenced=unreferenced,
    )


def sized_model(
    pods: int, policies_per_pod: int, layout: str = "v3.30", seed: int = 0, *, pool: int | None = None
) -> NodeModel:
    """A node of a given size for benchmarks: every pod gets ``policies_per_pod`` ingress
    policies and half as many egress ones, drawn from a shared pool (of ``pool`` policies,
    four times ``policies_per_pod`` by default; a large pool makes a node with many distinct
    policy chains, as in a cluster with thousands of policies), and two profiles."""
    rng = random.Random(seed)
    traits = _TRAITS[layout]
    if pool is None:
        pool = max(policies_per_pod * 4, 8)
    labels = [f"app=svc{i}" for i in range(pool)]
    policy_list: list[Policy] = []
    for index in range(pool):
        policy_list.append(
            Policy(
                name=f"policy-{index}",
                namespace="prod",
                kind="NetworkPolicy",
                selector=labels[index],
                tier="default",
                order=float(index),
                ingress=_rules(rng, rng.randint(1, 3), False),
                egress=_rules(rng, rng.randint(1, 3), False) if index % 2 == 0 else None,
            )
        )
    ns_prefix = traits.profile_ns_prefix
    profiles = (
        Profile(ns_prefix + "prod", (PolicyRule("allow"),), (PolicyRule("allow"),)),
        Profile("ksa.prod.default"),
    )
    endpoint_list: list[Endpoint] = []
    used: set[str] = set()
    for _ in range(pods):
        chosen = rng.sample(range(pool), policies_per_pod)
        endpoint_list.append(
            Endpoint(
                _interface(rng, used),
                "prod",
                frozenset(labels[i] for i in chosen),
                (ns_prefix + "prod",) if layout == "v2" else (ns_prefix + "prod", "ksa.prod.default"),
            )
        )
    return NodeModel(
        layout=layout,
        tiers=(Tier("default", 1_000_000.0),),
        policies=tuple(policy_list),
        profiles=profiles,
        endpoints=tuple(endpoint_list),
        options=RenderOptions(flow_seed=seed, flows_per_direction=2),
    )


# --------------------------------------------------------------------------------------
# Hypothesis strategy
# --------------------------------------------------------------------------------------


def node_models(
    layout: str | None = None,
    *,
    family: int | None = None,
    max_endpoints: int = 5,
    max_policies: int = 9,
    counter_forms: Iterable[tuple[CounterForm, Framing]] | None = None,
) -> Any:
    """A hypothesis strategy of :class:`NodeModel` for one layout (or any when None)."""
    from hypothesis import strategies as st

    forms = list(
        counter_forms
        or [
            ("prefix", "save"),
            ("prefix", "save"),
            ("inline", "list"),
            ("none", "list"),
            ("none", "save"),
            ("inline", "save"),
        ]
    )

    @st.composite
    def strategy(draw: Any) -> NodeModel:
        chosen = layout if layout is not None else draw(st.sampled_from(LAYOUTS))
        traits = _TRAITS[chosen]
        counter_form, framing = draw(st.sampled_from(forms))
        options = RenderOptions(
            family=family if family is not None else draw(st.sampled_from((4, 6))),
            counter_form=counter_form,
            framing=framing,
            deny_action=draw(st.sampled_from(("DROP", "REJECT"))) if traits.reject_ok else "DROP",
            flow_logs=draw(st.booleans()) if traits.flow_logs_ok else False,
            comment_order=draw(st.sampled_from(("cali_first", "cali_last", "trailing"))),
            quote_all=draw(st.booleans()),
            chain_order=draw(st.sampled_from(("sorted", "creation", "shuffled"))),
            order_seed=draw(st.integers(0, 2**16)),
            noise=draw(st.booleans()),
            other_tables=draw(st.booleans()) if framing == "save" else False,
            flow_seed=draw(st.integers(0, 2**31)),
            flows_per_direction=draw(st.integers(0, 6)),
            big_counters=draw(st.booleans()),
        )
        seed = draw(st.integers(0, 2**31))
        return build_model(
            random.Random(seed),
            chosen,
            endpoints=draw(st.integers(0, max_endpoints)),
            policies=draw(st.integers(0, max_policies)),
            pass_rules=draw(st.booleans()),
            options=options,
        )

    return strategy()
