import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from calico_accountant.v1 import snapshot_pb2 as _snapshot_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PolicyRef(_message.Message):
    __slots__ = ("kind", "namespace", "name", "tier", "stored_name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    STORED_NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    tier: str
    stored_name: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., tier: _Optional[str] = ..., stored_name: _Optional[str] = ...) -> None: ...

class RuleRef(_message.Message):
    __slots__ = ("index", "action")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    index: int
    action: str
    def __init__(self, index: _Optional[int] = ..., action: _Optional[str] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("node", "namespace", "pod", "app", "interface", "direction", "verdict", "kind", "policy", "profile", "packets", "bytes", "time", "rule", "tier", "endpoint", "host_endpoint")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HOST_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    node: str
    namespace: str
    pod: str
    app: str
    interface: str
    direction: _snapshot_pb2.Direction
    verdict: str
    kind: _snapshot_pb2.CounterKind
    policy: PolicyRef
    profile: str
    packets: int
    bytes: int
    time: _timestamp_pb2.Timestamp
    rule: RuleRef
    tier: str
    endpoint: _snapshot_pb2.EndpointKind
    host_endpoint: str
    def __init__(self, node: _Optional[str] = ..., namespace: _Optional[str] = ..., pod: _Optional[str] = ..., app: _Optional[str] = ..., interface: _Optional[str] = ..., direction: _Optional[_Union[_snapshot_pb2.Direction, str]] = ..., verdict: _Optional[str] = ..., kind: _Optional[_Union[_snapshot_pb2.CounterKind, str]] = ..., policy: _Optional[_Union[PolicyRef, _Mapping]] = ..., profile: _Optional[str] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule: _Optional[_Union[RuleRef, _Mapping]] = ..., tier: _Optional[str] = ..., endpoint: _Optional[_Union[_snapshot_pb2.EndpointKind, str]] = ..., host_endpoint: _Optional[str] = ...) -> None: ...

class HitFilter(_message.Message):
    __slots__ = ("node", "namespace", "pod", "app", "policy", "verdict", "direction", "min_packets")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    MIN_PACKETS_FIELD_NUMBER: _ClassVar[int]
    node: _containers.RepeatedScalarFieldContainer[str]
    namespace: _containers.RepeatedScalarFieldContainer[str]
    pod: _containers.RepeatedScalarFieldContainer[str]
    app: _containers.RepeatedScalarFieldContainer[str]
    policy: _containers.RepeatedScalarFieldContainer[str]
    verdict: _containers.RepeatedScalarFieldContainer[str]
    direction: _containers.RepeatedScalarFieldContainer[str]
    min_packets: int
    def __init__(self, node: _Optional[_Iterable[str]] = ..., namespace: _Optional[_Iterable[str]] = ..., pod: _Optional[_Iterable[str]] = ..., app: _Optional[_Iterable[str]] = ..., policy: _Optional[_Iterable[str]] = ..., verdict: _Optional[_Iterable[str]] = ..., direction: _Optional[_Iterable[str]] = ..., min_packets: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("filter", "since", "follow", "since_time", "until", "first", "last", "exclude")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    SINCE_TIME_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    filter: HitFilter
    since: _duration_pb2.Duration
    follow: bool
    since_time: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    first: int
    last: int
    exclude: _containers.RepeatedCompositeFieldContainer[HitFilter]
    def __init__(self, filter: _Optional[_Union[HitFilter, _Mapping]] = ..., since: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., follow: _Optional[bool] = ..., since_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., first: _Optional[int] = ..., last: _Optional[int] = ..., exclude: _Optional[_Iterable[_Union[HitFilter, _Mapping]]] = ...) -> None: ...

class HitBatch(_message.Message):
    __slots__ = ("hits", "lost")
    HITS_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    lost: int
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., lost: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("filter", "exclude")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    filter: HitFilter
    exclude: _containers.RepeatedCompositeFieldContainer[HitFilter]
    def __init__(self, filter: _Optional[_Union[HitFilter, _Mapping]] = ..., exclude: _Optional[_Iterable[_Union[HitFilter, _Mapping]]] = ...) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("totals", "time")
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    totals: _containers.RepeatedCompositeFieldContainer[Hit]
    time: _timestamp_pb2.Timestamp
    def __init__(self, totals: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node", "connected", "agent_instance_id", "last_snapshot_time", "sequence", "diagnostic_counts", "stale", "dataplanes")
    class DiagnosticCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    AGENT_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SNAPSHOT_TIME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTIC_COUNTS_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    DATAPLANES_FIELD_NUMBER: _ClassVar[int]
    node: str
    connected: bool
    agent_instance_id: str
    last_snapshot_time: _timestamp_pb2.Timestamp
    sequence: int
    diagnostic_counts: _containers.ScalarMap[str, int]
    stale: bool
    dataplanes: _containers.RepeatedScalarFieldContainer[_snapshot_pb2.Dataplane]
    def __init__(self, node: _Optional[str] = ..., connected: _Optional[bool] = ..., agent_instance_id: _Optional[str] = ..., last_snapshot_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ..., diagnostic_counts: _Optional[_Mapping[str, int]] = ..., stale: _Optional[bool] = ..., dataplanes: _Optional[_Iterable[_Union[_snapshot_pb2.Dataplane, str]]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ...) -> None: ...

class ServerStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerStatusResponse(_message.Message):
    __slots__ = ("agents_connected", "nodes_known", "uptime", "version", "api_version", "features")
    AGENTS_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    NODES_KNOWN_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    agents_connected: int
    nodes_known: int
    uptime: _duration_pb2.Duration
    version: str
    api_version: int
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agents_connected: _Optional[int] = ..., nodes_known: _Optional[int] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., version: _Optional[str] = ..., api_version: _Optional[int] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...
