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
    __slots__ = ("chain", "node_id", "epoch", "last_seq", "committed_seq", "caught_up", "reads", "writes", "in_sync", "storage_alarm", "disk_free_bytes")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    IN_SYNC_FIELD_NUMBER: _ClassVar[int]
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
    storage_alarm: bool
    disk_free_bytes: int
    def __init__(self, chain: _Optional[str] = ..., node_id: _Optional[str] = ..., epoch: _Optional[int] = ..., last_seq: _Optional[int] = ..., committed_seq: _Optional[int] = ..., caught_up: _Optional[bool] = ..., reads: _Optional[int] = ..., writes: _Optional[int] = ..., in_sync: _Optional[bool] = ..., storage_alarm: _Optional[bool] = ..., disk_free_bytes: _Optional[int] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("error", "config", "lease_ms", "storage_alarms", "clean_seq")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ALARMS_FIELD_NUMBER: _ClassVar[int]
    CLEAN_SEQ_FIELD_NUMBER: _ClassVar[int]
    error: Error
    config: _chain_pb2.ChainConfig
    lease_ms: int
    storage_alarms: _containers.RepeatedScalarFieldContainer[str]
    clean_seq: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., config: _Optional[_Union[_chain_pb2.ChainConfig, _Mapping]] = ..., lease_ms: _Optional[int] = ..., storage_alarms: _Optional[_Iterable[str]] = ..., clean_seq: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("id", "healthy", "reads", "writes", "last_seq", "committed_seq", "storage_alarm", "disk_free_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ALARM_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    healthy: bool
    reads: int
    writes: int
    last_seq: int
    committed_seq: int
    storage_alarm: bool
    disk_free_bytes: int
    def __init__(self, id: _Optional[str] = ..., healthy: _Optional[bool] = ..., reads: _Optional[int] = ..., writes: _Optional[int] = ..., last_seq: _Optional[int] = ..., committed_seq: _Optional[int] = ..., storage_alarm: _Optional[bool] = ..., disk_free_bytes: _Optional[int] = ...) -> None: ...

class ChainStatus(_message.Message):
    __slots__ = ("config", "health")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    config: _chain_pb2.ChainConfig
    health: _containers.RepeatedCompositeFieldContainer[MemberHealth]
    def __init__(self, config: _Optional[_Union[_chain_pb2.ChainConfig, _Mapping]] = ..., health: _Optional[_Iterable[_Union[MemberHealth, _Mapping]]] = ...) -> None: ...

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
