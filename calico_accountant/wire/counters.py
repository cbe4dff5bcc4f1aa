"""One counter record <-> one ``Counter`` message.

Decoding is the hot path of ingest (a big node sends ~160k counters): a counter is
built positionally after one pass of cheap checks, and the slow, explanatory
:func:`invalid_reason` runs only for a counter that fails them.
"""

from __future__ import annotations

from calico_accountant.records import CounterKey, CounterRecord, Direction, EndpointKind, Kind, RuleAction
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.bounds import (
    MAX_CHAIN_LENGTH,
    MAX_COMMENT_LENGTH,
    MAX_GROUP_MEMBERS,
    MAX_INTERFACE_LENGTH,
    MAX_RULE_IDS,
    WireError,
)

__all__ = [
    "DIRECTION_TO_PB",
    "ENDPOINT_TO_PB",
    "KIND_TO_PB",
    "counter_to_key",
    "counter_to_record",
    "fast_key",
    "fast_record",
    "invalid_reason",
    "key_to_counter",
    "record_to_counter",
]

KIND_TO_PB: dict[Kind, pb.CounterKind] = {
    Kind.POLICY_ACCEPT: pb.POLICY_ACCEPT,
    Kind.POLICY_DENY: pb.POLICY_DENY,
    Kind.NO_POLICY_DROP: pb.NO_POLICY_DROP,
    Kind.PROFILE_ACCEPT: pb.PROFILE_ACCEPT,
    Kind.NO_PROFILE_DROP: pb.NO_PROFILE_DROP,
    Kind.POLICY_RULE: pb.POLICY_RULE,
    Kind.ENDPOINT_ADMIN_DROP: pb.ENDPOINT_ADMIN_DROP,
}
_PB_TO_KIND: dict[int, Kind] = {int(v): k for k, v in KIND_TO_PB.items()}
DIRECTION_TO_PB: dict[Direction, pb.Direction] = {Direction.INGRESS: pb.INGRESS, Direction.EGRESS: pb.EGRESS}
_PB_TO_DIRECTION: dict[int, Direction] = {int(v): k for k, v in DIRECTION_TO_PB.items()}
_ACTIONS = frozenset(a.value for a in RuleAction)
ENDPOINT_TO_PB: dict[EndpointKind, pb.EndpointKind] = {
    EndpointKind.WORKLOAD: pb.ENDPOINT_WORKLOAD,
    EndpointKind.HOST: pb.ENDPOINT_HOST,
    EndpointKind.HOST_FORWARD: pb.ENDPOINT_HOST_FORWARD,
}
_PB_TO_ENDPOINT: dict[int, EndpointKind] = {int(v): k for k, v in ENDPOINT_TO_PB.items()}
_WORKLOAD = EndpointKind.WORKLOAD


def key_to_counter(key: CounterKey) -> pb.Counter:
    """The key fields only, as sent in ``NodeSnapshot.removed``."""
    return pb.Counter(
        kind=KIND_TO_PB[key.kind],
        family=key.family,
        direction=DIRECTION_TO_PB[key.direction],
        interface=key.interface,
        chain=key.chain,
        tier=key.tier,
        rule_index=key.rule_index,
        action=key.action,
        endpoint=ENDPOINT_TO_PB[key.endpoint],
    )


def record_to_counter(record: CounterRecord) -> pb.Counter:
    """One record as a wire counter (all fields; empty ones left unset, which is the
    same on the wire and twice as fast to build)."""
    key = record.key
    counter = pb.Counter(
        kind=KIND_TO_PB[key.kind],
        family=key.family,
        direction=DIRECTION_TO_PB[key.direction],
        interface=key.interface,
        chain=key.chain,
        tier=key.tier,
        rule_index=key.rule_index,
        packets=record.packets,
        bytes=record.bytes,
        rule_ids=record.rule_ids,
    )
    if key.action:
        counter.action = key.action
    if record.chain_comment:
        counter.chain_comment = record.chain_comment
    if record.group_members:
        counter.group_members.extend(record.group_members)
    if key.endpoint is not _WORKLOAD:
        counter.endpoint = ENDPOINT_TO_PB[key.endpoint]
    return counter


def counter_to_key(counter: pb.Counter) -> CounterKey:
    """The key of a wire counter; :class:`WireError` says why it is not a valid key."""
    key = fast_key(counter)
    if key is None:
        raise WireError(invalid_reason(counter))
    return key


def counter_to_record(counter: pb.Counter) -> CounterRecord:
    """A wire counter back as a record (validated, see :func:`counter_to_key`)."""
    record = fast_record(counter)
    if record is None:
        raise WireError(invalid_reason(counter))
    return record


# The decoding hot path: a 1000-pod node sends ~130k counters, so keys and records are
# built positionally (``tuple.__new__``) after one pass of cheap checks; the slow, explanatory
# :func:`invalid_reason` runs only for a counter that fails them.
_new_tuple = tuple.__new__  # what NamedTuple._make calls, without its Python frame
_RULE_KIND = int(pb.POLICY_RULE)


def fast_key(counter: pb.Counter) -> CounterKey | None:
    kind_number = counter.kind
    kind = _PB_TO_KIND.get(kind_number)
    direction = _PB_TO_DIRECTION.get(counter.direction)
    family = counter.family
    rule_index = counter.rule_index
    action = counter.action
    chain = counter.chain
    interface = counter.interface
    tier = counter.tier  # once: each read of a string field makes a new str
    endpoint = _PB_TO_ENDPOINT.get(counter.endpoint)
    if kind is None or direction is None or endpoint is None or (family != 4 and family != 6):
        return None
    if len(interface) > MAX_INTERFACE_LENGTH or len(chain) > MAX_CHAIN_LENGTH or len(tier) > MAX_CHAIN_LENGTH:
        return None
    if kind_number == _RULE_KIND:
        if rule_index < 0 or action not in _ACTIONS or not chain or interface or endpoint is not _WORKLOAD:
            return None
    elif rule_index != -1 or action or not interface:
        return None
    return _new_tuple(
        CounterKey, (kind, family, direction, interface, chain, tier, rule_index, action, endpoint)
    )


def fast_record(counter: pb.Counter) -> CounterRecord | None:
    key = fast_key(counter)
    if key is None:
        return None
    members = counter.group_members
    rule_ids = counter.rule_ids
    ids = tuple(rule_ids)
    comment = counter.chain_comment
    if (
        len(ids) > MAX_RULE_IDS
        or len(members) > MAX_GROUP_MEMBERS
        or len(comment) > MAX_COMMENT_LENGTH
        # map, not a generator; and no ``default=``: a keyword argument took max() ~200 ns longer
        or (ids and max(map(len, ids)) > MAX_CHAIN_LENGTH)
        or (members and max(map(len, members)) > MAX_CHAIN_LENGTH)
    ):
        return None
    return _new_tuple(
        CounterRecord, (key, counter.packets, counter.bytes, ids, comment, tuple(members) if members else ())
    )


def invalid_reason(counter: pb.Counter) -> str:
    """Why :func:`_fast_key` refused ``counter``, in words for the log and the ack."""
    kind = _PB_TO_KIND.get(int(counter.kind))
    if kind is None:
        return f"unknown counter kind {int(counter.kind)}"
    if _PB_TO_DIRECTION.get(int(counter.direction)) is None:
        return f"unknown direction {int(counter.direction)}"
    if _PB_TO_ENDPOINT.get(int(counter.endpoint)) is None:
        return f"unknown endpoint kind {int(counter.endpoint)}"
    if counter.family not in (4, 6):
        return f"family must be 4 or 6, not {counter.family}"
    for name, value, limit in (
        ("interface", counter.interface, MAX_INTERFACE_LENGTH),
        ("chain", counter.chain, MAX_CHAIN_LENGTH),
        ("tier", counter.tier, MAX_CHAIN_LENGTH),
        ("chain_comment", counter.chain_comment, MAX_COMMENT_LENGTH),
    ):
        if len(value) > limit:
            return f"{name} longer than {limit} characters"
    if len(counter.rule_ids) > MAX_RULE_IDS or len(counter.group_members) > MAX_GROUP_MEMBERS:
        return f"more than {MAX_RULE_IDS} rule_ids or {MAX_GROUP_MEMBERS} group_members"
    if any(len(text) > MAX_CHAIN_LENGTH for text in (*counter.rule_ids, *counter.group_members)):
        return f"a rule id or group member longer than {MAX_CHAIN_LENGTH} characters"
    if kind is Kind.POLICY_RULE:
        if counter.rule_index < 0:
            return f"policy_rule needs rule_index >= 0, not {counter.rule_index}"
        if counter.action not in _ACTIONS:
            return f"policy_rule action {counter.action!r} is not one of {sorted(_ACTIONS)}"
        if counter.interface:
            return "policy_rule with an interface (its counters are per node, not per workload)"
        if counter.endpoint != pb.ENDPOINT_WORKLOAD:
            return "policy_rule with a host endpoint kind (its counters belong to no endpoint)"
        return "policy_rule without a chain"
    if counter.rule_index != -1 or counter.action:
        return f"{kind.value} carries rule_index/action, which only policy_rule may"
    return f"{kind.value} without an interface"
