"""Routing decisions: which member serves a read, and whether a failed attempt is retried.

Pure (no I/O, no clock): time arrives as arguments and jitter from an injected
`random.Random`, so the same decisions run in the proxy and in scripted tests.

- Reads go to the ACTIVE member with the fewest reads outstanding from this proxy, ties
  broken round-robin: on an idle proxy that is plain round-robin over every replica (CRAQ's
  point: all of them serve), and a slow replica stops receiving new reads while it is behind.
- A failed attempt is retried (with the same request id, so the chain applies it at most
  once) until the operation's deadline. When the deadline passes, a write that may have
  reached the chain in some attempt is reported as *outcome unknown*, distinct from a plain
  *unavailable* where no attempt can have applied it. Which failures may have applied a write
  is read from structured codes (the chain's `Code`, gRPC's status code), never from error text.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence

import grpc

from keychain.backoff import Backoff, FailureStreak
from keychain.proto import chain_pb2

from .topology import Member

Code = chain_pb2.Code


class Disposition(enum.Enum):
    FINAL = "final"  # a definitive answer: hand it to the caller
    RETRY = "retry"  # refresh the topology and try again with the same request id


# Answers that describe the operation itself; everything else is about the chain's state.
_FINAL_CODES = frozenset(
    {
        Code.OK,
        Code.INVALID_ARGUMENT,
        Code.TOO_LARGE,
        Code.PRECONDITION_FAILED,
        Code.NOT_FOUND,
        # Refused at the head before sequencing (a member's disk is full): nothing applied, and retrying
        # within the request's deadline would not free space. The client sees 507 at once.
        Code.INSUFFICIENT_STORAGE,
    }
)


def classify(code: int) -> Disposition:
    """FINAL for OK and answers about the request; RETRY for epoch/head/lease/availability errors."""
    return Disposition.FINAL if code in _FINAL_CODES else Disposition.RETRY


def write_may_have_applied(code: int) -> bool:
    """Whether a non-final in-band write error leaves the write possibly applied.

    WRONG_EPOCH, NOT_HEAD, LEASE_EXPIRED and UNAVAILABLE are refusals before sequencing;
    OUTCOME_UNKNOWN is the chain saying it sequenced the write but cannot tell if it commits.
    """
    return code == Code.OUTCOME_UNKNOWN


# gRPC status codes that prove a Write call never reached the node's handler: the server has no such
# method (something else listens at that address) or turned the caller away before the handler ran.
# Every other failure (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN, INTERNAL,
# RESOURCE_EXHAUSTED, ...) can come after the node sequenced the write: a lost connection, a lost
# reply, a reply too large to receive. The node itself refuses writes in-band, with a `Code`.
_NEVER_HANDLED = frozenset(
    {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
)


def transport_failure_may_have_applied(status: grpc.StatusCode) -> bool:
    """Whether a Write call that failed with gRPC `status` may have applied its writes.

    Decided by the status code alone, never its text. A call the proxy did not send at all (no
    connection to the head) applied nothing and is not asked about here.
    """
    return status not in _NEVER_HANDLED


# The longest pause between two attempts of one operation; a new topology ends the pause sooner.
RETRY_BACKOFF = Backoff(base=0.005, cap=0.25)


class Retry:
    """Retry state of one logical operation (a write, with its one request id, or a read)."""

    def __init__(self, deadline: float, backoff: Backoff, rng: random.Random) -> None:
        self.deadline = deadline
        self.pauses = FailureStreak(backoff, rng)
        self.maybe_applied = False
        self.last_reason = ""

    def failed(self, now: float, reason: str, *, maybe_applied: bool = False) -> float | None:
        """Record a failed attempt; returns the delay before the next one, or None to give up."""
        self.last_reason = reason
        self.maybe_applied = self.maybe_applied or maybe_applied
        delay = self.pauses.delay()
        if now + delay >= self.deadline:
            return None
        return delay

    @property
    def outcome_unknown(self) -> bool:
        """After giving up: True when some attempt may have applied the write."""
        return self.maybe_applied


class ReadBalancer:
    """Least-outstanding-reads choice among active members, round-robin among equals."""

    def __init__(self) -> None:
        self.outstanding: dict[str, int] = {}
        self._cursor = 0

    def pick(self, members: Sequence[Member], avoid: frozenset[str] = frozenset()) -> Member | None:
        """Choose a member for the next read; members in `avoid` only if nothing else is left."""
        candidates = [m for m in members if m.id not in avoid] or list(members)
        if not candidates:
            return None
        start = self._cursor % len(candidates)
        self._cursor += 1
        best: Member | None = None
        best_load = 0
        for offset in range(len(candidates)):
            member = candidates[(start + offset) % len(candidates)]
            load = self.outstanding.get(member.id, 0)
            if best is None or load < best_load:
                best, best_load = member, load
        return best

    def started(self, member: Member) -> None:
        self.outstanding[member.id] = self.outstanding.get(member.id, 0) + 1

    def finished(self, member: Member) -> None:
        left = self.outstanding.get(member.id, 0) - 1
        if left > 0:
            self.outstanding[member.id] = left
        else:
            self.outstanding.pop(member.id, None)
