"""The operator's client of the coordinator's HTTP admin API.

Two calls: `GET /v1/status` (the chains, their epochs and members, and the Raft leader) and
`DELETE /v1/chains/{chain}/members/{id}` (unlink a node before its pod goes away). Any
coordinator member answers (followers forward to the leader), so the client tries the
members in turn and only gives up when none answers.

The two calls have their own timeouts. A status is quick. A removal is not: the coordinator
first drains the node and unlinks it only once its last lease has certainly expired, so the
answer typically takes about 1.5 s and up to the coordinator's bound of about 8 s (waiting for a
leader, then the drain after a new leader's grace); a shorter timeout would give up on removals
that are about to succeed and hammer the next member with the same request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from keychain.operator.stepping import ChainView, Member

log = logging.getLogger(__name__)

STATUS_TIMEOUT = 2.0  # seconds for GET /v1/status at one coordinator member
# Seconds for one DELETE of a chain member: above the coordinator's own bound on RemoveMember
# (forward wait 2 s + new-leader grace 1.2 s + removal after 1.51 s + lease 1.2 s + commit 2 s).
REMOVAL_TIMEOUT = 10.0


class CoordinatorError(Exception):
    """The coordinator answered something the operator cannot use."""


class CoordinatorUnavailable(CoordinatorError):
    """No coordinator member answered (down, electing a leader, or not created yet)."""


class RemovalRefused(CoordinatorError):
    """The coordinator refused to remove a member (e.g. the chain's last active one)."""


@dataclass(frozen=True)
class CoordinatorStatus:
    leader: str | None
    chains: dict[str, ChainView]


class CoordinatorClient:
    def __init__(self, base_urls: Sequence[str], *, timeout: float = STATUS_TIMEOUT,
                 removal_timeout: float = REMOVAL_TIMEOUT) -> None:
        if not base_urls:
            raise ValueError("a coordinator client needs at least one base URL")
        if timeout <= 0 or removal_timeout <= 0:
            raise ValueError(f"timeouts must be positive, got {timeout}, {removal_timeout}")
        self._base_urls = [url.rstrip("/") for url in base_urls]
        self._http = httpx.Client(timeout=timeout)
        self._removal_timeout = removal_timeout

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def status(self) -> CoordinatorStatus:
        response = self._request("GET", "/v1/status")
        if response.status_code != 200:
            raise CoordinatorError(f"GET /v1/status answered {response.status_code}: {response.text[:200]}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise CoordinatorError("GET /v1/status did not answer JSON") from exc
        return parse_status(payload)

    def remove_member(self, chain: str, member_id: str) -> int | None:
        """Unlink `member_id` from `chain`; the new epoch, or None if it was no member."""
        path = f"/v1/chains/{quote(chain, safe='')}/members/{quote(member_id, safe='')}"
        response = self._request("DELETE", path, timeout=self._removal_timeout)
        if response.status_code == 404:
            return None
        if response.status_code == 409:
            raise RemovalRefused(_error_message(response))
        if response.status_code != 200:
            raise CoordinatorError(f"DELETE {path} answered {response.status_code}: {_error_message(response)}")
        epoch = response.json().get("epoch")
        log.info("member removed chain=%s member=%s epoch=%s", chain, member_id, epoch)
        return epoch if isinstance(epoch, int) else None

    def _request(self, method: str, path: str, timeout: float | None = None) -> httpx.Response:
        """`timeout` replaces the client's (status) timeout for this request."""
        failures = []
        for base in self._base_urls:
            try:
                if timeout is None:
                    response = self._http.request(method, base + path)
                else:
                    response = self._http.request(method, base + path, timeout=timeout)
            except httpx.HTTPError as exc:
                failures.append(f"{base}: {exc.__class__.__name__}")
                continue
            if response.status_code in (502, 503, 504):
                failures.append(f"{base}: {response.status_code}")
                continue
            return response
        raise CoordinatorUnavailable("no coordinator answered (" + "; ".join(failures) + ")")


def parse_status(payload: Any) -> CoordinatorStatus:
    """Read a `/v1/status` document; malformed input raises CoordinatorError."""
    try:
        chains = {}
        for chain in payload.get("chains", []):
            members = tuple(
                Member(
                    id=str(m["id"]),
                    address=str(m.get("address", "")),
                    state=str(m["state"]),
                    role=str(m["role"]),
                    healthy=bool(m.get("healthy", False)),
                )
                for m in chain.get("members", [])
            )
            chains[str(chain["name"])] = ChainView(str(chain["name"]), int(chain["epoch"]), members)
        leader = payload.get("leader")
        return CoordinatorStatus(leader=str(leader) if leader else None, chains=chains)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CoordinatorError(f"malformed coordinator status: {exc!r}") from exc


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, Mapping):
        return str(body.get("message") or body.get("error") or body)
    return str(body)
