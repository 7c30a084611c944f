from keychain.proto import chain_pb2 as _chain_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PutRequest(_message.Message):
    __slots__ = ("key", "value", "request_id", "if_version", "if_absent")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IF_VERSION_FIELD_NUMBER: _ClassVar[int]
    IF_ABSENT_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    request_id: str
    if_version: int
    if_absent: bool
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., request_id: _Optional[str] = ..., if_version: _Optional[int] = ..., if_absent: _Optional[bool] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("key", "request_id", "if_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IF_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    request_id: str
    if_version: int
    def __init__(self, key: _Optional[bytes] = ..., request_id: _Optional[str] = ..., if_version: _Optional[int] = ...) -> None: ...

class WriteReply(_message.Message):
    __slots__ = ("error", "version", "current_version")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    error: _chain_pb2.Error
    version: int
    current_version: int
    def __init__(self, error: _Optional[_Union[_chain_pb2.Error, _Mapping]] = ..., version: _Optional[int] = ..., current_version: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("key", "consistency")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    consistency: _chain_pb2.Consistency
    def __init__(self, key: _Optional[bytes] = ..., consistency: _Optional[_Union[_chain_pb2.Consistency, str]] = ...) -> None: ...

class GetReply(_message.Message):
    __slots__ = ("error", "value", "version")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    error: _chain_pb2.Error
    value: bytes
    version: int
    def __init__(self, error: _Optional[_Union[_chain_pb2.Error, _Mapping]] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class RangeRequest(_message.Message):
    __slots__ = ("prefix", "start", "end", "limit", "keys_only", "consistency", "next", "version")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    KEYS_ONLY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    prefix: bytes
    start: bytes
    end: bytes
    limit: int
    keys_only: bool
    consistency: _chain_pb2.Consistency
    next: str
    version: int
    def __init__(self, prefix: _Optional[bytes] = ..., start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., limit: _Optional[int] = ..., keys_only: _Optional[bool] = ..., consistency: _Optional[_Union[_chain_pb2.Consistency, str]] = ..., next: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class RangeReply(_message.Message):
    __slots__ = ("error", "items", "next", "version", "compact_version")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    error: _chain_pb2.Error
    items: _containers.RepeatedCompositeFieldContainer[_chain_pb2.RangeItem]
    next: str
    version: int
    compact_version: int
    def __init__(self, error: _Optional[_Union[_chain_pb2.Error, _Mapping]] = ..., items: _Optional[_Iterable[_Union[_chain_pb2.RangeItem, _Mapping]]] = ..., next: _Optional[str] = ..., version: _Optional[int] = ..., compact_version: _Optional[int] = ...) -> None: ...

class TxnRequest(_message.Message):
    __slots__ = ("txn", "request_id")
    TXN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    txn: _chain_pb2.Txn
    request_id: str
    def __init__(self, txn: _Optional[_Union[_chain_pb2.Txn, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class TxnReply(_message.Message):
    __slots__ = ("error", "succeeded", "version", "results")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    error: _chain_pb2.Error
    succeeded: bool
    version: int
    results: _containers.RepeatedCompositeFieldContainer[_chain_pb2.TxnOpResult]
    def __init__(self, error: _Optional[_Union[_chain_pb2.Error, _Mapping]] = ..., succeeded: _Optional[bool] = ..., version: _Optional[int] = ..., results: _Optional[_Iterable[_Union[_chain_pb2.TxnOpResult, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("prefix", "start", "end", "after_version")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    prefix: bytes
    start: bytes
    end: bytes
    after_version: int
    def __init__(self, prefix: _Optional[bytes] = ..., start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., after_version: _Optional[int] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("error", "events", "version", "compact_version")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    error: _chain_pb2.Error
    events: _containers.RepeatedCompositeFieldContainer[_chain_pb2.WatchEvent]
    version: int
    compact_version: int
    def __init__(self, error: _Optional[_Union[_chain_pb2.Error, _Mapping]] = ..., events: _Optional[_Iterable[_Union[_chain_pb2.WatchEvent, _Mapping]]] = ..., version: _Optional[int] = ..., compact_version: _Optional[int] = ...) -> None: ...
