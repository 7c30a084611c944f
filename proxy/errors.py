"""The proxy's failure kinds, shared by the HTTP and gRPC front ends.

Each kind has one HTTP status, one stable error code for `{"error": ...}` bodies and one
chain `Code` for gRPC replies, so both APIs report a failure the same way.
"""

from __future__ import annotations

import enum

from keychain.proto import chain_pb2

Code = chain_pb2.Code


class ErrorKind(enum.Enum):
    # name = (HTTP status, error code, chain Code for the gRPC KV API)
    INVALID_KEY = (400, "invalid_key", Code.INVALID_ARGUMENT)
    INVALID_REQUEST = (400, "invalid_request", Code.INVALID_ARGUMENT)
    UNAUTHORIZED = (401, "unauthorized", Code.INVALID_ARGUMENT)
    NOT_FOUND = (404, "not_found", Code.NOT_FOUND)
    METHOD_NOT_ALLOWED = (405, "method_not_allowed", Code.INVALID_ARGUMENT)
    COMPACTED = (410, "compacted", Code.COMPACTED)
    PRECONDITION_FAILED = (412, "precondition_failed", Code.PRECONDITION_FAILED)
    TOO_LARGE = (413, "too_large", Code.TOO_LARGE)
    INSUFFICIENT_STORAGE = (507, "insufficient_storage", Code.INSUFFICIENT_STORAGE)  # a member's disk is full
    UNAVAILABLE = (503, "unavailable", Code.UNAVAILABLE)
    OUTCOME_UNKNOWN = (504, "outcome_unknown", Code.OUTCOME_UNKNOWN)

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def code(self) -> str:
        return self.value[1]

    @property
    def chain_code(self) -> int:
        return self.value[2]


class OpError(Exception):
    """A request that cannot be served as asked; carries what the client needs to react."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        current_version: int | None = None,
        retry_after: int | None = None,
        compact_version: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.current_version = current_version
        self.retry_after = retry_after
        self.compact_version = compact_version  # COMPACTED: the oldest version still readable


# In-band chain answers that end an operation with an error, and what the client sees.
FINAL_CHAIN_ERRORS: dict[int, ErrorKind] = {
    Code.INVALID_ARGUMENT: ErrorKind.INVALID_REQUEST,
    Code.TOO_LARGE: ErrorKind.TOO_LARGE,
    Code.PRECONDITION_FAILED: ErrorKind.PRECONDITION_FAILED,
    Code.NOT_FOUND: ErrorKind.NOT_FOUND,
    Code.INSUFFICIENT_STORAGE: ErrorKind.INSUFFICIENT_STORAGE,
}
