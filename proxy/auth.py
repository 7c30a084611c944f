"""The bearer token check, the same for every API of the proxy (HTTP routes and gRPC calls).

The token is compared in constant time, so a caller cannot learn it from response times.
"""

from __future__ import annotations

import hmac

from .errors import ErrorKind, OpError


class BearerAuth:
    """`Authorization: Bearer <token>` required when a token is configured, nothing otherwise."""

    def __init__(self, token: str | None) -> None:
        self._expected = f"Bearer {token}".encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._expected is not None

    def allows(self, authorization: bytes | str | None) -> bool:
        """Whether a request with this Authorization header (or gRPC metadata) may proceed."""
        if self._expected is None:
            return True
        given = authorization.encode() if isinstance(authorization, str) else authorization or b""
        return hmac.compare_digest(given, self._expected)

    def check(self, authorization: bytes | str | None) -> None:
        """Raise the UNAUTHORIZED error the HTTP API answers with unless `allows`."""
        if not self.allows(authorization):
            raise OpError(ErrorKind.UNAUTHORIZED, "a valid 'Authorization: Bearer <token>' header is required")
