import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Dataplane(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATAPLANE_UNSPECIFIED: _ClassVar[Dataplane]
    IPTABLES_LEGACY: _ClassVar[Dataplane]
    IPTABLES_NFT: _ClassVar[Dataplane]
    NFTABLES: _ClassVar[Dataplane]
    DATAPLANE_OTHER: _ClassVar[Dataplane]

class CounterKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COUNTER_KIND_UNSPECIFIED: _ClassVar[CounterKind]
    POLICY_ACCEPT: _ClassVar[CounterKind]
    POLICY_DENY: _ClassVar[CounterKind]
    NO_POLICY_DROP: _ClassVar[CounterKind]
    PROFILE_ACCEPT: _ClassVar[CounterKind]
    NO_PROFILE_DROP: _ClassVar[CounterKind]
    POLICY_RULE: _ClassVar[CounterKind]
    ENDPOINT_ADMIN_DROP: _ClassVar[CounterKind]

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    INGRESS: _ClassVar[Direction]
    EGRESS: _ClassVar[Direction]

class EndpointKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENDPOINT_WORKLOAD: _ClassVar[EndpointKind]
    ENDPOINT_HOST: _ClassVar[EndpointKind]
    ENDPOINT_HOST_FORWARD: _ClassVar[EndpointKind]
DATAPLANE_UNSPECIFIED: Dataplane
IPTABLES_LEGACY: Dataplane
IPTABLES_NFT: Dataplane
NFTABLES: Dataplane
DATAPLANE_OTHER: Dataplane
COUNTER_KIND_UNSPECIFIED: CounterKind
POLICY_ACCEPT: CounterKind
POLICY_DENY: CounterKind
NO_POLICY_DROP: CounterKind
PROFILE_ACCEPT: CounterKind
NO_PROFILE_DROP: CounterKind
POLICY_RULE: CounterKind
ENDPOINT_ADMIN_DROP: CounterKind
DIRECTION_UNSPECIFIED: Direction
INGRESS: Direction
EGRESS: Direction
ENDPOINT_WORKLOAD: EndpointKind
ENDPOINT_HOST: EndpointKind
ENDPOINT_HOST_FORWARD: EndpointKind

class TableSource(_message.Message):
    __slots__ = ("dataplane", "family", "command", "rules")
    DATAPLANE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    dataplane: Dataplane
    family: int
    command: str
    rules: int
    def __init__(self, dataplane: _Optional[_Union[Dataplane, str]] = ..., family: _Optional[int] = ..., command: _Optional[str] = ..., rules: _Optional[int] = ...) -> None: ...

class Counter(_message.Message):
    __slots__ = ("kind", "family", "direction", "interface", "chain", "tier", "rule_index", "action", "packets", "bytes", "rule_ids", "chain_comment", "group_members", "endpoint", "key_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    RULE_INDEX_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    RULE_IDS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_COMMENT_FIELD_NUMBER: _ClassVar[int]
    GROUP_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    kind: CounterKind
    family: int
    direction: Direction
    interface: str
    chain: str
    tier: str
    rule_index: int
    action: str
    packets: int
    bytes: int
    rule_ids: _containers.RepeatedScalarFieldContainer[str]
    chain_comment: str
    group_members: _containers.RepeatedScalarFieldContainer[str]
    endpoint: EndpointKind
    key_id: int
    def __init__(self, kind: _Optional[_Union[CounterKind, str]] = ..., family: _Optional[int] = ..., direction: _Optional[_Union[Direction, str]] = ..., interface: _Optional[str] = ..., chain: _Optional[str] = ..., tier: _Optional[str] = ..., rule_index: _Optional[int] = ..., action: _Optional[str] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ..., rule_ids: _Optional[_Iterable[str]] = ..., chain_comment: _Optional[str] = ..., group_members: _Optional[_Iterable[str]] = ..., endpoint: _Optional[_Union[EndpointKind, str]] = ..., key_id: _Optional[int] = ...) -> None: ...

class KeyedValues(_message.Message):
    __slots__ = ("ids", "packets", "bytes")
    IDS_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    packets: _containers.RepeatedScalarFieldContainer[int]
    bytes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., packets: _Optional[_Iterable[int]] = ..., bytes: _Optional[_Iterable[int]] = ...) -> None: ...

class Diagnostic(_message.Message):
    __slots__ = ("code", "message", "line", "source")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    line: int
    source: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., line: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class NodeSnapshot(_message.Message):
    __slots__ = ("node", "agent_instance_id", "sequence", "read_time", "sources", "full", "counters", "removed", "diagnostic_counts", "diagnostics", "chunk_index", "chunk_count", "agent_version", "values", "removed_ids")
    class DiagnosticCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    AGENT_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    READ_TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTIC_COUNTS_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_IDS_FIELD_NUMBER: _ClassVar[int]
    node: str
    agent_instance_id: str
    sequence: int
    read_time: _timestamp_pb2.Timestamp
    sources: _containers.RepeatedCompositeFieldContainer[TableSource]
    full: bool
    counters: _containers.RepeatedCompositeFieldContainer[Counter]
    removed: _containers.RepeatedCompositeFieldContainer[Counter]
    diagnostic_counts: _containers.ScalarMap[str, int]
    diagnostics: _containers.RepeatedCompositeFieldContainer[Diagnostic]
    chunk_index: int
    chunk_count: int
    agent_version: str
    values: KeyedValues
    removed_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, node: _Optional[str] = ..., agent_instance_id: _Optional[str] = ..., sequence: _Optional[int] = ..., read_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sources: _Optional[_Iterable[_Union[TableSource, _Mapping]]] = ..., full: _Optional[bool] = ..., counters: _Optional[_Iterable[_Union[Counter, _Mapping]]] = ..., removed: _Optional[_Iterable[_Union[Counter, _Mapping]]] = ..., diagnostic_counts: _Optional[_Mapping[str, int]] = ..., diagnostics: _Optional[_Iterable[_Union[Diagnostic, _Mapping]]] = ..., chunk_index: _Optional[int] = ..., chunk_count: _Optional[int] = ..., agent_version: _Optional[str] = ..., values: _Optional[_Union[KeyedValues, _Mapping]] = ..., removed_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class IngestAck(_message.Message):
    __slots__ = ("sequence", "resync_requested", "message", "waiting", "queue_position", "redirect_address", "redirect_owner", "key_ids")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RESYNC_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_OWNER_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    resync_requested: bool
    message: str
    waiting: bool
    queue_position: int
    redirect_address: str
    redirect_owner: str
    key_ids: bool
    def __init__(self, sequence: _Optional[int] = ..., resync_requested: _Optional[bool] = ..., message: _Optional[str] = ..., waiting: _Optional[bool] = ..., queue_position: _Optional[int] = ..., redirect_address: _Optional[str] = ..., redirect_owner: _Optional[str] = ..., key_ids: _Optional[bool] = ...) -> None: ...
