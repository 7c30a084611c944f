"""The operator's client of the coordinator's HTTP admin API.

The calls: `GET /v1/status` (the chains, their epochs and members, the nodes held back from
rejoining, the Raft leader and members),
`DELETE /v1/chains/{chain}/members/{id}` (unlink a node before its pod goes away), and the
coordinator's own membership, one server at a time: `POST /v1/members` (add a member: it joins
as a learner and is promoted to voter once caught up; the answer waits for that) and
`DELETE /v1/members/{id}` (remove one; a leader hands over first). Any
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
from keychain.operator.stepping import ChainView, CoordinatorMember, Member, ReadmissionHold

from keychain.tls import TlsFiles, client_ssl_context

log = logging.getLogger(__name__)

STATUS_TIMEOUT = 2.0  # seconds for GET /v1/status at one coordinator member
# Seconds for one DELETE of a chain member: above the coordinator's own bound on RemoveMember
# (forward wait 2 s + new-leader grace 1.2 s + removal after 1.51 s + lease 1.2 s + commit 2 s).
REMOVAL_TIMEOUT = 10.0
# Seconds for one change of the coordinator's own membership: above its bound on AddCoordinatorMember
# (forward wait 2 s + catch-up 10 s + three proposals of 2 s).
MEMBERSHIP_TIMEOUT = 20.0


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
    members: tuple[CoordinatorMember, ...] = ()  # the coordinator's own Raft members


class CoordinatorClient:
    def __init__(self, base_urls: Sequence[str], *, timeout: float = STATUS_TIMEOUT,
                 removal_timeout: float = REMOVAL_TIMEOUT, tls_files: TlsFiles | None = None,
                 token: str | None = None) -> None:
        """With `tls_files` the admin API is reached over HTTPS (http:// URLs become https://), with the
        operator's client certificate, re-read when the files change; `token` is sent as a bearer token."""
        if not base_urls:
            raise ValueError("a coordinator client needs at least one base URL")
        if timeout <= 0 or removal_timeout <= 0:
            raise ValueError(f"timeouts must be positive, got {timeout}, {removal_timeout}")
        self._base_urls = [url.rstrip("/") for url in base_urls]
        if tls_files is not None:
            self._base_urls = [f"https://{url.removeprefix('http://')}" if not url.startswith("https://") else url
                               for url in self._base_urls]
        self._timeout = timeout
        self._tls_files = tls_files
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._tls_stamp = tls_files.stamp() if tls_files else None
        self._http = self._client()
        self._removal_timeout = removal_timeout

    def _client(self) -> httpx.Client:
        verify: Any = True if self._tls_files is None else client_ssl_context(self._tls_files)
        return httpx.Client(timeout=self._timeout, verify=verify, headers=self._headers)

    def _follow_rotation(self) -> None:
        """A new client (new connections) once the certificate files changed on disk."""
        if self._tls_files is None or self._tls_files.stamp() == self._tls_stamp:
            return
        self._tls_stamp = self._tls_files.stamp()
        self._http.close()
        self._http = self._client()

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

    def add_coordinator(self, member_id: str, address: str) -> None:
        """Add a coordinator member; returns once it is a voter (it caught up). Repeating is harmless."""
        response = self._request("POST", "/v1/members", timeout=MEMBERSHIP_TIMEOUT, body={"id": member_id,
                                 "address": address}, next_on_busy=False)  # fmt: skip
        if response.status_code != 201:
            raise CoordinatorError(f"POST /v1/members {member_id} answered {response.status_code}: "
                                   f"{_error_message(response)}")  # fmt: skip
        log.info("coordinator member added member=%s address=%s", member_id, address)

    def remove_coordinator(self, member_id: str) -> bool:
        """Remove a coordinator member; False if it was no member."""
        path = f"/v1/members/{quote(member_id, safe='')}"
        response = self._request("DELETE", path, timeout=MEMBERSHIP_TIMEOUT, next_on_busy=False)
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise CoordinatorError(f"DELETE {path} answered {response.status_code}: {_error_message(response)}")
        log.info("coordinator member removed member=%s", member_id)
        return True

    def _request(self, method: str, path: str, timeout: float | None = None, *, body: Any = None,
                 next_on_busy: bool = True) -> httpx.Response:  # fmt: skip
        """`timeout` replaces the client's (status) timeout for this request. A member that answers
        502-504 is passed over for the next one, unless `next_on_busy` is false (a membership change
        that waited for a catch-up is answered as it is: asking the next member would wait again)."""
        failures = []
        self._follow_rotation()
        for base in self._base_urls:
            extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
            if body is not None:
                extra["json"] = body
            try:
                response = self._http.request(method, base + path, **extra)
            except httpx.HTTPError as exc:
                failures.append(f"{base}: {exc.__class__.__name__}")
                continue
            if response.status_code in (502, 503, 504) and next_on_busy:
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
                    storage_full=bool(m.get("storage_alarm", False)),
                    suspected=str(m.get("suspected", "")),
                )
                for m in chain.get("members", [])
            )
            held = tuple(
                ReadmissionHold(node=str(h["id"]), remaining_ms=int(h.get("remaining_ms", 0)),
                                removals=int(h.get("removals", 0)), reason=str(h.get("reason", "")))
                for h in chain.get("held", [])
            )  # fmt: skip
            chains[str(chain["name"])] = ChainView(str(chain["name"]), int(chain["epoch"]), members, held)
        leader = payload.get("leader")
        members = tuple(CoordinatorMember(id=str(m["id"]), voter=m.get("suffrage", "voter") == "voter")
                        for m in payload.get("members", []))  # fmt: skip
        return CoordinatorStatus(leader=str(leader) if leader else None, chains=chains, members=members)
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
