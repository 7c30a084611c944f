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
    WRONG_EPOCH: _ClassVar[Code]
    NOT_HEAD: _ClassVar[Code]
    LEASE_EXPIRED: _ClassVar[Code]
    INVALID_ARGUMENT: _ClassVar[Code]
    TOO_LARGE: _ClassVar[Code]
    PRECONDITION_FAILED: _ClassVar[Code]
    UNAVAILABLE: _ClassVar[Code]
    OUTCOME_UNKNOWN: _ClassVar[Code]
    NOT_FOUND: _ClassVar[Code]
    COMPACTED: _ClassVar[Code]
    INSUFFICIENT_STORAGE: _ClassVar[Code]

class MemberState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVE: _ClassVar[MemberState]
    SYNCING: _ClassVar[MemberState]

class OpKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PUT: _ClassVar[OpKind]
    DELETE: _ClassVar[OpKind]
    TXN: _ClassVar[OpKind]

class CompareResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EQUAL: _ClassVar[CompareResult]
    NOT_EQUAL: _ClassVar[CompareResult]
    GREATER: _ClassVar[CompareResult]
    LESS: _ClassVar[CompareResult]

class TxnOpKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TXN_PUT: _ClassVar[TxnOpKind]
    TXN_DELETE: _ClassVar[TxnOpKind]
    TXN_GET: _ClassVar[TxnOpKind]

class Consistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STRONG: _ClassVar[Consistency]
    EVENTUAL: _ClassVar[Consistency]

class EntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_PUT: _ClassVar[EntryKind]
    ENTRY_DELETE: _ClassVar[EntryKind]
    ENTRY_NOOP: _ClassVar[EntryKind]
    ENTRY_TXN: _ClassVar[EntryKind]
OK: Code
WRONG_EPOCH: Code
NOT_HEAD: Code
LEASE_EXPIRED: Code
INVALID_ARGUMENT: Code
TOO_LARGE: Code
PRECONDITION_FAILED: Code
UNAVAILABLE: Code
OUTCOME_UNKNOWN: Code
NOT_FOUND: Code
COMPACTED: Code
INSUFFICIENT_STORAGE: Code
ACTIVE: MemberState
SYNCING: MemberState
PUT: OpKind
DELETE: OpKind
TXN: OpKind
EQUAL: CompareResult
NOT_EQUAL: CompareResult
GREATER: CompareResult
LESS: CompareResult
TXN_PUT: TxnOpKind
TXN_DELETE: TxnOpKind
TXN_GET: TxnOpKind
STRONG: Consistency
EVENTUAL: Consistency
ENTRY_PUT: EntryKind
ENTRY_DELETE: EntryKind
ENTRY_NOOP: EntryKind
ENTRY_TXN: EntryKind

class Error(_message.Message):
    __slots__ = ("code", "message", "epoch")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    code: Code
    message: str
    epoch: int
    def __init__(self, code: _Optional[_Union[Code, str]] = ..., message: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("id", "address", "state")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    state: MemberState
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[_Union[MemberState, str]] = ...) -> None: ...

class ChainConfig(_message.Message):
    __slots__ = ("chain", "epoch", "members")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    chain: str
    epoch: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, chain: _Optional[str] = ..., epoch: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class WriteOp(_message.Message):
    __slots__ = ("request_id", "key", "kind", "value", "if_version", "if_absent", "txn")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    IF_VERSION_FIELD_NUMBER: _ClassVar[int]
    IF_ABSENT_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    key: bytes
    kind: OpKind
    value: bytes
    if_version: int
    if_absent: bool
    txn: Txn
    def __init__(self, request_id: _Optional[str] = ..., key: _Optional[bytes] = ..., kind: _Optional[_Union[OpKind, str]] = ..., value: _Optional[bytes] = ..., if_version: _Optional[int] = ..., if_absent: _Optional[bool] = ..., txn: _Optional[_Union[Txn, _Mapping]] = ...) -> None: ...

class Txn(_message.Message):
    __slots__ = ("compare", "success", "failure")
    COMPARE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    compare: _containers.RepeatedCompositeFieldContainer[Compare]
    success: _containers.RepeatedCompositeFieldContainer[TxnOp]
    failure: _containers.RepeatedCompositeFieldContainer[TxnOp]
    def __init__(self, compare: _Optional[_Iterable[_Union[Compare, _Mapping]]] = ..., success: _Optional[_Iterable[_Union[TxnOp, _Mapping]]] = ..., failure: _Optional[_Iterable[_Union[TxnOp, _Mapping]]] = ...) -> None: ...

class Compare(_message.Message):
    __slots__ = ("key", "result", "version", "value", "exists")
    KEY_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    result: CompareResult
    version: int
    value: bytes
    exists: bool
    def __init__(self, key: _Optional[bytes] = ..., result: _Optional[_Union[CompareResult, str]] = ..., version: _Optional[int] = ..., value: _Optional[bytes] = ..., exists: _Optional[bool] = ...) -> None: ...

class TxnOp(_message.Message):
    __slots__ = ("kind", "key", "value")
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    kind: TxnOpKind
    key: bytes
    value: bytes
    def __init__(self, kind: _Optional[_Union[TxnOpKind, str]] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class TxnOpResult(_message.Message):
    __slots__ = ("found", "value", "version")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    version: int
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class WriteResult(_message.Message):
    __slots__ = ("error", "version", "current_version", "succeeded", "results")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    version: int
    current_version: int
    succeeded: bool
    results: _containers.RepeatedCompositeFieldContainer[TxnOpResult]
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., version: _Optional[int] = ..., current_version: _Optional[int] = ..., succeeded: _Optional[bool] = ..., results: _Optional[_Iterable[_Union[TxnOpResult, _Mapping]]] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("epoch", "ops")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    ops: _containers.RepeatedCompositeFieldContainer[WriteOp]
    def __init__(self, epoch: _Optional[int] = ..., ops: _Optional[_Iterable[_Union[WriteOp, _Mapping]]] = ...) -> None: ...

class WriteReply(_message.Message):
    __slots__ = ("error", "results")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    results: _containers.RepeatedCompositeFieldContainer[WriteResult]
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., results: _Optional[_Iterable[_Union[WriteResult, _Mapping]]] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("epoch", "key", "consistency")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    key: bytes
    consistency: Consistency
    def __init__(self, epoch: _Optional[int] = ..., key: _Optional[bytes] = ..., consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class ReadReply(_message.Message):
    __slots__ = ("error", "value", "version")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    error: Error
    value: bytes
    version: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class ReadOp(_message.Message):
    __slots__ = ("key", "consistency")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    consistency: Consistency
    def __init__(self, key: _Optional[bytes] = ..., consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class ReadBatchRequest(_message.Message):
    __slots__ = ("epoch", "ops", "call")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    ops: _containers.RepeatedCompositeFieldContainer[ReadOp]
    call: int
    def __init__(self, epoch: _Optional[int] = ..., ops: _Optional[_Iterable[_Union[ReadOp, _Mapping]]] = ..., call: _Optional[int] = ...) -> None: ...

class RangeRequest(_message.Message):
    __slots__ = ("epoch", "start", "end", "limit", "keys_only", "consistency", "snapshot")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    KEYS_ONLY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    start: bytes
    end: bytes
    limit: int
    keys_only: bool
    consistency: Consistency
    snapshot: int
    def __init__(self, epoch: _Optional[int] = ..., start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., limit: _Optional[int] = ..., keys_only: _Optional[bool] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., snapshot: _Optional[int] = ...) -> None: ...

class RangeItem(_message.Message):
    __slots__ = ("key", "value", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    version: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class RangeReply(_message.Message):
    __slots__ = ("error", "items", "snapshot", "more", "compact_version")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    COMPACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    error: Error
    items: _containers.RepeatedCompositeFieldContainer[RangeItem]
    snapshot: int
    more: bool
    compact_version: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., items: _Optional[_Iterable[_Union[RangeItem, _Mapping]]] = ..., snapshot: _Optional[int] = ..., more: _Optional[bool] = ..., compact_version: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("epoch", "start", "end", "after_version")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    start: bytes
    end: bytes
    after_version: int
    def __init__(self, epoch: _Optional[int] = ..., start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., after_version: _Optional[int] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("version", "kind", "key", "value")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    version: int
    kind: EntryKind
    key: bytes
    value: bytes
    def __init__(self, version: _Optional[int] = ..., kind: _Optional[_Union[EntryKind, str]] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class WatchBatch(_message.Message):
    __slots__ = ("error", "events", "committed_seq", "compact_version")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMPACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    error: Error
    events: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    committed_seq: int
    compact_version: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., events: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ..., committed_seq: _Optional[int] = ..., compact_version: _Optional[int] = ...) -> None: ...

class ReadBatchReply(_message.Message):
    __slots__ = ("error", "results", "call")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    error: Error
    results: _containers.RepeatedCompositeFieldContainer[ReadReply]
    call: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., results: _Optional[_Iterable[_Union[ReadReply, _Mapping]]] = ..., call: _Optional[int] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("seq", "request_id", "key", "kind", "value", "current_version", "writes", "succeeded", "results")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    request_id: str
    key: bytes
    kind: EntryKind
    value: bytes
    current_version: int
    writes: _containers.RepeatedCompositeFieldContainer[TxnWrite]
    succeeded: bool
    results: _containers.RepeatedCompositeFieldContainer[TxnOpResult]
    def __init__(self, seq: _Optional[int] = ..., request_id: _Optional[str] = ..., key: _Optional[bytes] = ..., kind: _Optional[_Union[EntryKind, str]] = ..., value: _Optional[bytes] = ..., current_version: _Optional[int] = ..., writes: _Optional[_Iterable[_Union[TxnWrite, _Mapping]]] = ..., succeeded: _Optional[bool] = ..., results: _Optional[_Iterable[_Union[TxnOpResult, _Mapping]]] = ...) -> None: ...

class TxnWrite(_message.Message):
    __slots__ = ("key", "tombstone", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    tombstone: bool
    value: bytes
    def __init__(self, key: _Optional[bytes] = ..., tombstone: _Optional[bool] = ..., value: _Optional[bytes] = ...) -> None: ...

class LinkDown(_message.Message):
    __slots__ = ("hello", "batch")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    hello: LinkHello
    batch: EntryBatch
    def __init__(self, hello: _Optional[_Union[LinkHello, _Mapping]] = ..., batch: _Optional[_Union[EntryBatch, _Mapping]] = ...) -> None: ...

class LinkHello(_message.Message):
    __slots__ = ("epoch", "from_id", "first_seq")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FROM_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    from_id: str
    first_seq: int
    def __init__(self, epoch: _Optional[int] = ..., from_id: _Optional[str] = ..., first_seq: _Optional[int] = ...) -> None: ...

class EntryBatch(_message.Message):
    __slots__ = ("epoch", "entries", "committed_seq")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    committed_seq: int
    def __init__(self, epoch: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., committed_seq: _Optional[int] = ...) -> None: ...

class LinkUp(_message.Message):
    __slots__ = ("welcome", "ack")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    welcome: LinkWelcome
    ack: Ack
    def __init__(self, welcome: _Optional[_Union[LinkWelcome, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class LinkWelcome(_message.Message):
    __slots__ = ("error", "last_seq", "committed_seq", "needs_transfer", "epoch")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEEDS_TRANSFER_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    error: Error
    last_seq: int
    committed_seq: int
    needs_transfer: bool
    epoch: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., last_seq: _Optional[int] = ..., committed_seq: _Optional[int] = ..., needs_transfer: _Optional[bool] = ..., epoch: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("epoch", "committed_seq")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    committed_seq: int
    def __init__(self, epoch: _Optional[int] = ..., committed_seq: _Optional[int] = ...) -> None: ...

class VersionQueryRequest(_message.Message):
    __slots__ = ("epoch", "keys")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, epoch: _Optional[int] = ..., keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class VersionQueryReply(_message.Message):
    __slots__ = ("error", "versions", "committed_seq")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    error: Error
    versions: _containers.RepeatedScalarFieldContainer[int]
    committed_seq: int
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., versions: _Optional[_Iterable[int]] = ..., committed_seq: _Optional[int] = ...) -> None: ...

class TransferRequest(_message.Message):
    __slots__ = ("epoch", "from_id")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FROM_ID_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    from_id: str
    def __init__(self, epoch: _Optional[int] = ..., from_id: _Optional[str] = ...) -> None: ...

class KeyVersion(_message.Message):
    __slots__ = ("key", "version", "tombstone", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    version: int
    tombstone: bool
    value: bytes
    def __init__(self, key: _Optional[bytes] = ..., version: _Optional[int] = ..., tombstone: _Optional[bool] = ..., value: _Optional[bytes] = ...) -> None: ...

class RequestOutcome(_message.Message):
    __slots__ = ("request_id", "seq", "kind", "current_version", "succeeded", "results")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    seq: int
    kind: EntryKind
    current_version: int
    succeeded: bool
    results: _containers.RepeatedCompositeFieldContainer[TxnOpResult]
    def __init__(self, request_id: _Optional[str] = ..., seq: _Optional[int] = ..., kind: _Optional[_Union[EntryKind, str]] = ..., current_version: _Optional[int] = ..., succeeded: _Optional[bool] = ..., results: _Optional[_Iterable[_Union[TxnOpResult, _Mapping]]] = ...) -> None: ...

class TransferChunk(_message.Message):
    __slots__ = ("keys", "outcomes", "through_seq", "last")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    THROUGH_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KeyVersion]
    outcomes: _containers.RepeatedCompositeFieldContainer[RequestOutcome]
    through_seq: int
    last: bool
    def __init__(self, keys: _Optional[_Iterable[_Union[KeyVersion, _Mapping]]] = ..., outcomes: _Optional[_Iterable[_Union[RequestOutcome, _Mapping]]] = ..., through_seq: _Optional[int] = ..., last: _Optional[bool] = ...) -> None: ...

class ConfigureRequest(_message.Message):
    __slots__ = ("config", "lease_ms")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    config: ChainConfig
    lease_ms: int
    def __init__(self, config: _Optional[_Union[ChainConfig, _Mapping]] = ..., lease_ms: _Optional[int] = ...) -> None: ...

class ConfigureReply(_message.Message):
    __slots__ = ("error",)
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error: Error
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("id", "chain", "epoch", "role", "last_seq", "committed_seq", "reads", "writes", "version_queries", "lease_valid", "keys", "storage_alarm", "disk_free_bytes", "storage_alarms")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    VERSION_QUERIES_FIELD_NUMBER: _ClassVar[int]
    LEASE_VALID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ALARM_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ALARMS_FIELD_NUMBER: _ClassVar[int]
    id: str
    chain: str
    epoch: int
    role: str
    last_seq: int
    committed_seq: int
    reads: int
    writes: int
    version_queries: int
    lease_valid: bool
    keys: int
    storage_alarm: bool
    disk_free_bytes: int
    storage_alarms: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., chain: _Optional[str] = ..., epoch: _Optional[int] = ..., role: _Optional[str] = ..., last_seq: _Optional[int] = ..., committed_seq: _Optional[int] = ..., reads: _Optional[int] = ..., writes: _Optional[int] = ..., version_queries: _Optional[int] = ..., lease_valid: _Optional[bool] = ..., keys: _Optional[int] = ..., storage_alarm: _Optional[bool] = ..., disk_free_bytes: _Optional[int] = ..., storage_alarms: _Optional[_Iterable[str]] = ...) -> None: ...
