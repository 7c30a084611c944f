"""The messages Raft members exchange, as plain values (their wire form is keychain/proto/raft.proto).

One `Message` shape serves every kind, as in etcd's raft; which fields matter depends on `type`:

| type | sender -> to | fields used |
|---|---|---|
| APPEND | leader -> follower | index/log_term = the entry before `entries`; commit |
| APPEND_RESP | follower -> leader | index = last matching index; on reject: index = the refused prev index, reject_hint/log_term = where to probe next |
| VOTE, PRE_VOTE | candidate -> voter | term (the term asked for), index/log_term = candidate's last entry; context = b"transfer" when leadership is being handed over |
| VOTE_RESP, PRE_VOTE_RESP | voter -> candidate | reject |
| HEARTBEAT | leader -> follower | commit (never above the follower's match); context = a ReadIndex round |
| HEARTBEAT_RESP | follower -> leader | context echoed |
| SNAPSHOT | leader -> follower | snapshot |
| PROPOSE | follower -> leader | entries (data and type only); term 0 |
| READ_INDEX | follower -> leader | context; term 0 |
| READ_INDEX_RESP | leader -> follower | index, context |
| TRANSFER_LEADER | any -> leader | index unused; `sender` is the member that should become leader |
| TIMEOUT_NOW | leader -> transferee | campaign now, skipping PreVote |
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from keychain.coordinator.log import Entry, Snapshot

TRANSFER_CONTEXT = b"transfer"  # a vote request sent on the leader's instruction, not on a timeout


class MessageType(IntEnum):
    APPEND = 0
    APPEND_RESP = 1
    VOTE = 2
    VOTE_RESP = 3
    PRE_VOTE = 4
    PRE_VOTE_RESP = 5
    HEARTBEAT = 6
    HEARTBEAT_RESP = 7
    SNAPSHOT = 8
    PROPOSE = 9
    READ_INDEX = 10
    READ_INDEX_RESP = 11
    TRANSFER_LEADER = 12
    TIMEOUT_NOW = 13


RESPONSE_TYPE = {
    MessageType.VOTE: MessageType.VOTE_RESP,
    MessageType.PRE_VOTE: MessageType.PRE_VOTE_RESP,
}


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: str
    sender: str
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""

    def describe(self) -> str:
        """One readable line, used by logs and the scripted tests."""
        t = self.type
        parts = [f"{self.sender}->{self.to} {t.name}", f"term={self.term}"]
        if t in (MessageType.APPEND, MessageType.VOTE, MessageType.PRE_VOTE):
            parts.append(f"log={self.log_term}/{self.index}")
        if t is MessageType.APPEND:
            parts.append(f"commit={self.commit}")
            if self.entries:
                parts.append("entries=[" + " ".join(describe_entry(e) for e in self.entries) + "]")
        if t is MessageType.APPEND_RESP:
            if self.reject:
                parts.append(f"rejected index={self.index} hint={self.log_term}/{self.reject_hint}")
            else:
                parts.append(f"index={self.index}")
        if t in (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
            parts.append("rejected" if self.reject else "granted")
        if t is MessageType.HEARTBEAT:
            parts.append(f"commit={self.commit}")
        if t is MessageType.SNAPSHOT and self.snapshot is not None:
            s = self.snapshot
            parts.append(f"snapshot={s.term}/{s.index} voters={','.join(s.voters)}")
        if t is MessageType.PROPOSE:
            parts.append("entries=[" + " ".join(describe_entry(e) for e in self.entries) + "]")
        if t is MessageType.READ_INDEX_RESP:
            parts.append(f"index={self.index}")
        if self.context:
            parts.append(f"context={self.context.decode(errors='replace')}")
        return " ".join(parts)


def describe_entry(e: Entry) -> str:
    data = e.data.decode(errors="replace")
    kind = {0: "", 1: "conf:", 2: "noop"}[int(e.type)]
    return f"{e.term}/{e.index}" + (f":{kind}{data}" if kind != "noop" else ":noop")
