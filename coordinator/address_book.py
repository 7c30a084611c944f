"""Where each coordinator member listens, as a pure function of the applied Raft log.

The Raft core knows members by id only; the shell must know their gRPC addresses to send them
Raft messages and to forward client requests to the leader. The addresses ride in the membership
entries (membership.py): BOOTSTRAP carries the initial voters', ADD_LEARNER the new member's, and
REMOVE forgets one. `AddressBook.apply` follows exactly the rule the core follows for the same
entries (a change that does not fit the configuration is skipped by both), so every member that
applied the same log holds the same book.

The core's `Snapshot` names members by id only, so the book travels inside the snapshot's data:
`pack_snapshot` wraps the state machine's own snapshot in a small envelope (magic, the length of
a JSON map id -> address, the map, then the state machine's bytes), and `unpack_snapshot` takes
it apart. Data without the magic is a bare state machine snapshot written before the envelope
existed: its book is empty and the shell falls back on its command-line hints (--peers), as it
does for a cluster whose BOOTSTRAP entry predates addresses.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

from keychain.coordinator.membership import ConfChange, ConfChangeError, ConfChangeOp, Membership

SNAPSHOT_MAGIC = b"KCADDR1\n"
_LENGTH = struct.Struct("<I")


class AddressBookError(ValueError):
    """Snapshot data claims to carry an address book but it cannot be read."""


class AddressBook:
    """The configuration as of the applied log (voters, learners) and each member's address."""

    def __init__(self, membership: Membership | None = None, addresses: Mapping[str, str] | None = None) -> None:
        self.membership = membership or Membership()
        members = self.membership.members
        self._addresses = {m: a for m, a in (addresses or {}).items() if m in members and a}

    def apply(self, change: ConfChange) -> bool:
        """Take a committed membership change into account; False if it was skipped (as the core skips it)."""
        try:
            self.membership = self.membership.applied(change)
        except ConfChangeError:
            return False
        match change.op:
            case ConfChangeOp.BOOTSTRAP:
                self._addresses = {m: a for m, a in change.addresses if a}
            case ConfChangeOp.ADD_LEARNER:
                if change.address:
                    self._addresses[change.node] = change.address
            case ConfChangeOp.REMOVE:
                self._addresses.pop(change.node, None)
            case ConfChangeOp.PROMOTE:
                pass
        return True

    def address(self, member: str) -> str:
        """The member's address, "" if the log never gave one."""
        return self._addresses.get(member, "")

    def addresses(self) -> dict[str, str]:
        return dict(self._addresses)

    def __repr__(self) -> str:
        return (f"AddressBook(voters={sorted(self.membership.voters)}, learners={sorted(self.membership.learners)}, "
                f"addresses={self._addresses})")


def pack_snapshot(machine_data: bytes, addresses: Mapping[str, str]) -> bytes:
    """Snapshot data holding both the state machine's snapshot and the address book."""
    header = json.dumps(dict(sorted(addresses.items())), separators=(",", ":")).encode()
    return SNAPSHOT_MAGIC + _LENGTH.pack(len(header)) + header + machine_data


def unpack_snapshot(data: bytes) -> tuple[bytes, dict[str, str]]:
    """(state machine snapshot, addresses) from `pack_snapshot` data; bare data has no addresses."""
    if not data.startswith(SNAPSHOT_MAGIC):
        return data, {}
    start = len(SNAPSHOT_MAGIC) + _LENGTH.size
    if len(data) < start:
        raise AddressBookError("snapshot envelope is cut short")
    (length,) = _LENGTH.unpack_from(data, len(SNAPSHOT_MAGIC))
    if len(data) < start + length:
        raise AddressBookError(f"snapshot envelope announces {length} bytes of addresses, holds fewer")
    try:
        body = json.loads(data[start:start + length])
        addresses = {str(k): str(v) for k, v in body.items()}
    except (ValueError, AttributeError) as exc:
        raise AddressBookError(f"snapshot envelope holds a malformed address book: {exc}") from exc
    return data[start + length:], addresses
