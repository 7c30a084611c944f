"""Who may use the coordinator's admin HTTP API: a bearer token, or a client certificate naming an
operator or admin (`keychain.access.authorize_admin_http`).

Authentication is on when a token or TLS is configured; with neither (a local development cluster)
the API stays open as before. Reads (GET) may be left open for probes and scrapers on request.
The token is compared in constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from keychain.access import Decision, Identity, authorize_admin_http


@dataclass(frozen=True)
class AdminAuth:
    token: str | None = field(default=None, repr=False)  # the bearer token accepted, if any
    tls: bool = False  # clients may show a certificate from the chain's CA
    open_reads: bool = False  # GET requests need no credentials

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.tls

    def decide(self, method: str, authorization: str | None, identity: Identity | None) -> Decision:
        """The decision for a request: its HTTP method, Authorization header and certificate identity."""
        if not self.enabled or (self.open_reads and method in ("GET", "HEAD")):
            return Decision.ALLOW
        if self.token is not None and authorization is not None and hmac.compare_digest(
                authorization.encode(), f"Bearer {self.token}".encode()):
            return Decision.ALLOW
        if identity is not None and self.tls:
            return authorize_admin_http(identity)
        return Decision.UNAUTHENTICATED


def read_token_file(path: str) -> str:
    """The token in a file (surrounding whitespace dropped); ValueError if empty."""
    with open(path) as f:
        token = f.read().strip()
    if not token:
        raise ValueError(f"the admin token file {path} is empty")
    return token
