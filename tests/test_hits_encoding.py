"""Hits encoded from per-counter templates decode to exactly what ``counter_to_hit`` builds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.hits.convert import counter_to_hit
from aggregator.hits.encoding import HitEncoder, varint
from aggregator.model import (
    CounterNames,
    HostEndpointIdentity,
    PolicyIdentity,
    PolicyKind,
    ProfileIdentity,
    ResolvedCounter,
    WorkloadIdentity,
)
from calico_accountant.records import CounterKey, Direction, EndpointKind, Kind, RuleAction
from calico_accountant.v1 import hits_pb2 as hpb

_text = st.text(st.characters(codec="utf-8", blacklist_categories=["Cs"]), max_size=40)
_amount = st.one_of(st.integers(0, 300), st.integers(0, 2**64 - 1))


@st.composite
def _counters(draw: st.DrawFn) -> ResolvedCounter:
    kind = draw(st.sampled_from(list(Kind)))
    rule = kind is Kind.POLICY_RULE
    key = CounterKey(
        kind=kind,
        family=draw(st.sampled_from((4, 6))),
        direction=draw(st.sampled_from(list(Direction))),
        interface="" if rule else draw(_text),
        chain=draw(_text),
        tier=draw(_text),
        rule_index=draw(st.integers(0, 500)) if rule else -1,
        action=draw(st.sampled_from(list(RuleAction))) if rule else "",
        endpoint=EndpointKind.WORKLOAD if rule else draw(st.sampled_from(list(EndpointKind))),
    )
    workload = None
    if not rule and draw(st.booleans()):
        workload = WorkloadIdentity(draw(_text), key.interface, draw(_text), draw(_text), draw(_text))
    policy = None
    if draw(st.booleans()):
        policy = PolicyIdentity(
            draw(st.sampled_from(list(PolicyKind))), draw(_text), draw(_text), draw(_text), draw(_text)
        )
    profile = ProfileIdentity(draw(_text)) if draw(st.booleans()) else None
    host = None
    if key.endpoint is not EndpointKind.WORKLOAD:
        workload, host = None, HostEndpointIdentity(draw(_text), key.interface, draw(_text))
    return ResolvedCounter(
        node=draw(_text), key=key, workload=workload, policy=policy, profile=profile, host_endpoint=host
    )


_moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=400, deadline=None)
@given(_counters(), _amount, _amount, _moments)
def test_encoded_hit_equals_the_built_message(
    counter: ResolvedCounter, packets: int, octets: int, moment: datetime
) -> None:
    encoder = HitEncoder()
    expected = counter_to_hit(counter, packets, octets, moment)
    for _ in range(2):  # the second time from the cached template
        encoded = encoder.encode(CounterNames.of(counter), counter.key, packets, octets, moment)
        assert hpb.Hit.FromString(encoded) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_counters(), _amount, _amount), min_size=0, max_size=30), st.integers(0, 10**6))
def test_a_batch_holds_the_hits_in_order_and_the_lost_count(
    hits: list[tuple[ResolvedCounter, int, int]], lost: int
) -> None:
    encoder = HitEncoder()
    moment = datetime(2026, 12, 5, 7, 0, 1, 250_000, tzinfo=UTC)
    batch = encoder.batch([encoder.encode(CounterNames.of(c), c.key, p, b, moment) for c, p, b in hits], lost)
    assert list(batch.hits) == [counter_to_hit(c, p, b, moment) for c, p, b in hits]
    assert batch.lost == lost


def test_the_template_cache_is_bounded_and_never_confuses_counters() -> None:
    encoder = HitEncoder(max_templates=8)
    key = CounterKey(Kind.NO_POLICY_DROP, 4, Direction.INGRESS, "cali1", tier="default")
    moment = datetime(2026, 12, 5, tzinfo=UTC)
    for index in range(50):
        # A fresh object each time: an id may be reused by the next one once the previous
        # is gone; the cache must still answer with the new counter's fields.
        names = CounterNames.of(ResolvedCounter(node=f"node-{index}", key=key))
        decoded = hpb.Hit.FromString(encoder.encode(names, key, index, 0, moment + timedelta(seconds=index)))
        assert (decoded.node, decoded.packets) == (f"node-{index}", index)
        assert encoder.templates <= 8


def test_the_counters_of_one_run_share_its_names_but_not_a_template() -> None:
    """Hits carry their run's names and their own key: each key gets its template, made
    once while the names live (a template per hit was ~8 us)."""
    names = CounterNames.of(
        ResolvedCounter(
            node="n1", key=CounterKey(Kind.POLICY_ACCEPT, 4, Direction.INGRESS, "cali1", "cali-pi-a")
        )
    )
    accept = CounterKey(Kind.POLICY_ACCEPT, 4, Direction.INGRESS, "cali1", "cali-pi-a", "default")
    deny = accept._replace(kind=Kind.POLICY_DENY)
    encoder = HitEncoder()
    moment = datetime(2026, 12, 5, tzinfo=UTC)
    for round_ in range(3):
        for key in (accept, deny):
            decoded = hpb.Hit.FromString(encoder.encode(names, key, round_ + 1, 0, moment))
            assert decoded == counter_to_hit(names.counter(key), round_ + 1, 0, moment)
    assert encoder.templates == 2


def test_varint_matches_protobuf() -> None:
    for value in (1, 127, 128, 300, 2**32, 2**63, 2**64 - 1):  # 0 is not serialized in proto3
        assert hpb.HitBatch(lost=value).SerializeToString() == b"\x10" + varint(value)
