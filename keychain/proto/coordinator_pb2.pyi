from keychain.proto import chain_pb2 as _chain_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OK: _ClassVar[Code]
    UNAVAILABLE: _ClassVar[Code]
    NOT_FOUND: _ClassVar[Code]
    ALREADY_EXISTS: _ClassVar[Code]
    INVALID_ARGUMENT: _ClassVar[Code]
    FAILED_PRECONDITION: _ClassVar[Code]
OK: Code
UNAVAILABLE: Code
NOT_FOUND: Code
ALREADY_EXISTS: Code
INVALID_ARGUMENT: Code
FAILED_PRECONDITION: Code

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: Code
    message: str
    def __init__(self, code: _Optional[_Union[Code, str]] = ..., message: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("chain", "node_id", "address")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    chain: str
    node_id: str
    address: str
    def __init__(self, chain: _Optional[str] = ..., node_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("error", "config", "lease_ms")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    config: _chain_pb2.ChainConfig
    lease_ms: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., config: _Optional[_Union[_chain_pb2.ChainConfig, _Mapping]] = ..., lease_ms: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("chain", "node_id", "epoch", "last_seq", "committed_seq", "caught_up", "reads", "writes", "in_sync", "link_health", "seq", "surrendered_below", "storage_alarm", "disk_free_bytes")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    IN_SYNC_FIELD_NUMBER: _ClassVar[int]
    LINK_HEALTH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SURRENDERED_BELOW_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ALARM_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    chain: str
    node_id: str
    epoch: int
    last_seq: int
    committed_seq: int
    caught_up: bool
    reads: int
    writes: int
    in_sync: bool
    link_health: LinkHealth
    seq: int
    surrendered_below: int
    storage_alarm: bool
    disk_free_bytes: int
    def __init__(self, chain: _Optional[str] = ..., node_id: _Optional[str] = ..., epoch: _Optional[int] = ..., last_seq: _Optional[int] = ..., committed_seq: _Optional[int] = ..., caught_up: _Optional[bool] = ..., reads: _Optional[int] = ..., writes: _Optional[int] = ..., in_sync: _Optional[bool] = ..., link_health: _Optional[_Union[LinkHealth, _Mapping]] = ..., seq: _Optional[int] = ..., surrendered_below: _Optional[int] = ..., storage_alarm: _Optional[bool] = ..., disk_free_bytes: _Optional[int] = ...) -> None: ...

class LinkHealth(_message.Message):
    __slots__ = ("epoch", "successor", "successor_unreachable", "successor_not_acking", "successor_acked", "predecessor", "predecessor_silent", "stalled", "coordinator_unheard")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SUCCESSOR_FIELD_NUMBER: _ClassVar[int]
    SUCCESSOR_UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    SUCCESSOR_NOT_ACKING_FIELD_NUMBER: _ClassVar[int]
    SUCCESSOR_ACKED_FIELD_NUMBER: _ClassVar[int]
    PREDECESSOR_FIELD_NUMBER: _ClassVar[int]
    PREDECESSOR_SILENT_FIELD_NUMBER: _ClassVar[int]
    STALLED_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_UNHEARD_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    successor: str
    successor_unreachable: bool
    successor_not_acking: bool
    successor_acked: int
    predecessor: str
    predecessor_silent: bool
    stalled: bool
    coordinator_unheard: bool
    def __init__(self, epoch: _Optional[int] = ..., successor: _Optional[str] = ..., successor_unreachable: _Optional[bool] = ..., successor_not_acking: _Optional[bool] = ..., successor_acked: _Optional[int] = ..., predecessor: _Optional[str] = ..., predecessor_silent: _Optional[bool] = ..., stalled: _Optional[bool] = ..., coordinator_unheard: _Optional[bool] = ...) -> None: ...

class ReportUnreachableRequest(_message.Message):
    __slots__ = ("chain", "reporter", "node_id", "epoch", "unreachable_ms")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    REPORTER_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_MS_FIELD_NUMBER: _ClassVar[int]
    chain: str
    reporter: str
    node_id: str
    epoch: int
    unreachable_ms: int
    def __init__(self, chain: _Optional[str] = ..., reporter: _Optional[str] = ..., node_id: _Optional[str] = ..., epoch: _Optional[int] = ..., unreachable_ms: _Optional[int] = ...) -> None: ...

class ReportReply(_message.Message):
    __slots__ = ("error", "accepted")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    error: Error
    accepted: bool
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., accepted: _Optional[bool] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("error", "config", "lease_ms", "storage_alarms", "clean_seq", "leader_address")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ALARMS_FIELD_NUMBER: _ClassVar[int]
    CLEAN_SEQ_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    config: _chain_pb2.ChainConfig
    lease_ms: int
    storage_alarms: _containers.RepeatedScalarFieldContainer[str]
    clean_seq: int
    leader_address: str
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., config: _Optional[_Union[_chain_pb2.ChainConfig, _Mapping]] = ..., lease_ms: _Optional[int] = ..., storage_alarms: _Optional[_Iterable[str]] = ..., clean_seq: _Optional[int] = ..., leader_address: _Optional[str] = ...) -> None: ...

class CreateChainRequest(_message.Message):
    __slots__ = ("chain",)
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    chain: str
    def __init__(self, chain: _Optional[str] = ...) -> None: ...

class DeleteChainRequest(_message.Message):
    __slots__ = ("chain",)
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    chain: str
    def __init__(self, chain: _Optional[str] = ...) -> None: ...

class RemoveMemberRequest(_message.Message):
    __slots__ = ("chain", "node_id")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    chain: str
    node_id: str
    def __init__(self, chain: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class GetChainRequest(_message.Message):
    __slots__ = ("chain",)
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    chain: str
    def __init__(self, chain: _Optional[str] = ...) -> None: ...

class ChainReply(_message.Message):
    __slots__ = ("error", "config")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    error: Error
    config: _chain_pb2.ChainConfig
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., config: _Optional[_Union[_chain_pb2.ChainConfig, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("chain",)
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    chain: str
    def __init__(self, chain: _Optional[str] = ...) -> None: ...

class MemberHealth(_message.Message):
    __slots__ = ("id", "healthy", "reads", "writes", "last_seq", "committed_seq", "link_health", "suspected", "storage_alarm", "disk_free_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    LINK_HEALTH_FIELD_NUMBER: _ClassVar[int]
    SUSPECTED_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ALARM_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    healthy: bool
    reads: int
    writes: int
    last_seq: int
    committed_seq: int
    link_health: LinkHealth
    suspected: str
    storage_alarm: bool
    disk_free_bytes: int
    def __init__(self, id: _Optional[str] = ..., healthy: _Optional[bool] = ..., reads: _Optional[int] = ..., writes: _Optional[int] = ..., last_seq: _Optional[int] = ..., committed_seq: _Optional[int] = ..., link_health: _Optional[_Union[LinkHealth, _Mapping]] = ..., suspected: _Optional[str] = ..., storage_alarm: _Optional[bool] = ..., disk_free_bytes: _Optional[int] = ...) -> None: ...

class ReadmissionHold(_message.Message):
    __slots__ = ("node_id", "remaining_ms", "removals", "reason")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MS_FIELD_NUMBER: _ClassVar[int]
    REMOVALS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    remaining_ms: int
    removals: int
    reason: str
    def __init__(self, node_id: _Optional[str] = ..., remaining_ms: _Optional[int] = ..., removals: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ChainStatus(_message.Message):
    __slots__ = ("config", "health", "held")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    config: _chain_pb2.ChainConfig
    health: _containers.RepeatedCompositeFieldContainer[MemberHealth]
    held: _containers.RepeatedCompositeFieldContainer[ReadmissionHold]
    def __init__(self, config: _Optional[_Union[_chain_pb2.ChainConfig, _Mapping]] = ..., health: _Optional[_Iterable[_Union[MemberHealth, _Mapping]]] = ..., held: _Optional[_Iterable[_Union[ReadmissionHold, _Mapping]]] = ...) -> None: ...

class CoordinatorMember(_message.Message):
    __slots__ = ("id", "address", "role", "suffrage")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SUFFRAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    role: str
    suffrage: str
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., role: _Optional[str] = ..., suffrage: _Optional[str] = ...) -> None: ...

class AddCoordinatorMemberRequest(_message.Message):
    __slots__ = ("id", "address")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class RemoveCoordinatorMemberRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CoordinatorMembersReply(_message.Message):
    __slots__ = ("error", "members")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    members: _containers.RepeatedCompositeFieldContainer[CoordinatorMember]
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., members: _Optional[_Iterable[_Union[CoordinatorMember, _Mapping]]] = ...) -> None: ...

class ClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("error", "leader", "members", "chains")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    leader: str
    members: _containers.RepeatedCompositeFieldContainer[CoordinatorMember]
    chains: _containers.RepeatedCompositeFieldContainer[ChainStatus]
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., leader: _Optional[str] = ..., members: _Optional[_Iterable[_Union[CoordinatorMember, _Mapping]]] = ..., chains: _Optional[_Iterable[_Union[ChainStatus, _Mapping]]] = ...) -> None: ...
