"""Resolving once per run of counters of one workload and chain gives each counter exactly
the names, lookups and raw names resolving it alone gives (``aggregator.resolution.runs``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.ledger.state import CounterState
from aggregator.model import CounterNames, PolicyGroup, PolicyIdentity, PolicyKind, ResolvedCounter
from aggregator.resolution.memo import MemoResolver
from aggregator.resolution.resolve import (
    ChainNames,
    EndpointNames,
    resolve_counter,
    unresolved_chain,
    unresolved_endpoint,
)
from aggregator.resolution.runs import Resolution, RunResolver
from calico_accountant.records import CounterKey, Direction, EndpointKind, Kind
from tests.support.accounting import FakeCatalog


class CommentedCatalog(FakeCatalog):
    """Names a policy by its chain *and* felix's comment, so that stale comments would show;
    raises for the interfaces and chains named ``bad``."""

    def workload(self, node: str, interface: str):  # type: ignore[no-untyped-def]
        if "bad" in interface:
            raise RuntimeError("poison pod")
        return super().workload(node, interface)

    def policy(self, chain: str, comment: str = "") -> PolicyIdentity:
        if "bad" in chain:
            raise RuntimeError("poison policy")
        found = super().policy(chain, comment)
        return (
            found
            if not comment
            else PolicyIdentity(PolicyKind.NETWORK_POLICY, "ns", f"{chain}:{comment}", "t")
        )

    def group(self, chain: str, member_chains: Sequence[str], member_comments: Sequence[str]) -> PolicyGroup:
        return PolicyGroup(
            chain, tuple(self.policy(m, c) for m, c in zip(member_chains, member_comments, strict=True))
        )


def _catalog() -> CommentedCatalog:
    catalog = CommentedCatalog()
    catalog.add_pod("n1", "cali1", "shop", "web-1", "web").add_pod("n2", "cali1", "shop", "web-2", "web")
    catalog.add_policy("cali-pi-allow", "allow", "shop")
    catalog.profiles["cali-pri-kns.shop"] = "kns.shop"
    return catalog


KINDS = [Kind.POLICY_ACCEPT, Kind.POLICY_DENY, Kind.NO_POLICY_DROP, Kind.PROFILE_ACCEPT, Kind.POLICY_RULE]


@st.composite
def counters(draw: st.DrawFn) -> tuple[str, CounterState]:
    kind = draw(st.sampled_from(KINDS))
    chain = draw(
        st.sampled_from(["cali-pi-allow", "cali-pi-other", "cali-gi-abc", "cali-pri-kns.shop", "cali-pi-bad"])
    )
    interface = "" if kind is Kind.POLICY_RULE else draw(st.sampled_from(["cali1", "cali2", "calibad"]))
    endpoint = draw(st.sampled_from([EndpointKind.WORKLOAD, EndpointKind.HOST]))
    key = CounterKey(
        kind, 4, draw(st.sampled_from(list(Direction))), interface, chain,
        draw(st.sampled_from(["default", "t2"])), 0 if kind is Kind.POLICY_RULE else -1,
        "allow" if kind is Kind.POLICY_RULE else "", EndpointKind.WORKLOAD if not interface else endpoint,
    )  # fmt: skip
    members = draw(st.sampled_from([(), ("cali-pi-allow", "cali-pi-other")]))
    comment = draw(st.sampled_from(["", "Policy shop/allow ingress"]))
    return draw(st.sampled_from(["n1", "n2"])), CounterState(key, 0, 0, (), 0, 0, comment, members, None)


def _alone(
    catalog: CommentedCatalog, node: str, state: CounterState, comments: dict[str, str]
) -> tuple[Resolution, ResolvedCounter, int]:
    memo = MemoResolver(catalog)
    errors: list[str] = []
    counter = resolve_counter(
        memo, node, state.key, chain_comment=state.chain_comment, group_members=state.group_members,
        comments=comments, on_error=lambda what, error: errors.append(what),
    )  # fmt: skip
    unresolved = unresolved_endpoint(
        EndpointNames(counter.workload, counter.host_endpoint)
    ) + unresolved_chain(ChainNames(counter.policy, counter.group, counter.profile), counter.key.chain)
    resolution = Resolution(CounterNames.of(counter), tuple(memo.touched), unresolved)
    return resolution, counter, len(errors)


def _resolve(
    runs: RunResolver,
    node: str,
    state: CounterState,
    comments: dict[str, str],
    errors: list[str] | None = None,
) -> Resolution:
    """``runs.resolve`` of ``state``'s key, with its comment and group members."""
    told = errors if errors is not None else []
    return runs.resolve(
        node,
        state.key,
        state.chain_comment,
        state.group_members,
        comments,
        lambda what, error: told.append(what),
    )


SIBLINGS = ("verdict", "tier", "comment", "kind")


def _sibling(state: CounterState, change: str) -> CounterState:
    """The same workload's chain with one thing changed: its verdict (the run goes on), its
    tier, its comment or a kind that asks for other names (the run ends)."""
    key = state.key
    if change == "verdict":
        flipped = {Kind.POLICY_ACCEPT: Kind.POLICY_DENY, Kind.POLICY_DENY: Kind.POLICY_ACCEPT}
        return dataclasses.replace(state, key=key._replace(kind=flipped.get(key.kind, key.kind)))
    if change == "tier":
        return dataclasses.replace(state, key=key._replace(tier="t2" if key.tier == "default" else "default"))
    if change == "comment":
        return dataclasses.replace(state, chain_comment="Policy shop/renamed ingress" + state.chain_comment)
    if key.kind is Kind.POLICY_RULE:
        return state
    other = Kind.PROFILE_ACCEPT if key.kind is not Kind.PROFILE_ACCEPT else Kind.NO_POLICY_DROP
    return dataclasses.replace(state, key=key._replace(kind=other))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(counters(), st.booleans(), st.sampled_from(SIBLINGS)), max_size=40), st.booleans())
def test_runs_resolve_every_counter_as_alone(
    sequence: list[tuple[tuple[str, CounterState], bool, str]], commented: bool
) -> None:
    catalog = _catalog()
    comments = {"cali-pi-other": "Policy shop/other ingress"} if commented else {}
    runs = RunResolver(MemoResolver(catalog))
    errors: list[str] = []
    expected_errors = 0
    steps: list[tuple[str, CounterState, bool]] = []
    for (node, state), restart, change in sequence:  # each with a sibling, so that runs form
        steps += [(node, state, restart), (node, _sibling(state, change), False), (node, state, False)]
    for node, state, restart in steps:
        if restart:
            runs.restart()
        got = _resolve(runs, node, state, comments, errors)
        alone, counter, failed = _alone(catalog, node, state, comments)
        expected_errors += failed
        assert got == alone
        assert got.names.counter(state.key) == counter  # what the routes keep gives it back
    assert len(errors) == expected_errors  # a failed lookup counted for every counter, as alone


def test_a_restart_reads_the_chain_comments_again() -> None:
    """Group members' names come from the node's chain comments, which change between
    batches: a run must not carry the old ones past :meth:`RunResolver.restart`."""
    runs = RunResolver(MemoResolver(_catalog()))
    key = CounterKey(Kind.POLICY_ACCEPT, 4, Direction.INGRESS, "cali1", "cali-gi-abc", "default")
    state = CounterState(key, 0, 0, (), 0, 0, "", ("cali-pi-other",), None)
    comments = {"cali-pi-other": "one"}
    first = _resolve(runs, "n1", state, comments)
    assert first.names.policy is not None and first.names.policy.name == "cali-pi-other:one"
    comments["cali-pi-other"] = "two"
    runs.restart()
    again = _resolve(
        runs, "n1", dataclasses.replace(state, key=key._replace(kind=Kind.POLICY_DENY)), comments
    )
    assert again.names.policy is not None and again.names.policy.name == "cali-pi-other:two"
