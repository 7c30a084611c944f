from keychain.proto import chain_pb2 as _chain_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
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
