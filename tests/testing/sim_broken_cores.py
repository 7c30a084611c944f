"""Deliberately broken cores and shells, substituted into the simulator by tests only.

Two families:
- classic mistakes the simulator must catch: a node answering a dirty read with its dirty value
  (no version query), a node serving a range from its newest versions, dirty ones included, a head
  splitting a transaction's writes over several seqs, a Raft member that forgets its vote when it restarts, a tail whose shell
  acknowledges before its disk has synced, a node driver that sends before the sync a Ready required;
- the chain core as it was before each fix the simulator led to (see test_sim_found_bugs.py), so a
  regression test can show that its seed still reaches the bug.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import replace

from keychain.coordinator.log import RaftStorage
from keychain.coordinator.raft import RaftConfig, RaftCore
from keychain.node import txn
from keychain.node.core import ChainCore, LinkState, Ready, Role
from keychain.node.driver import NodeDriver
from keychain.node.messages import (
    Batch,
    Consistency,
    Entry,
    EntryKind,
    Error,
    RangeRead,
    RangeReply,
    ReadReply,
    TransferChunk,
    Txn,
    WriteOp,
)

from keychain.testing.sim_node import SimNode

# ---- classic mistakes ----


class DirtyReadCore(ChainCore):
    """Serves a strong read of a dirty key with its newest, uncommitted version."""

    def client_read(self, ticket: int, epoch: int, key: bytes, consistency: Consistency, now: float
                    ) -> ReadReply | None:
        err = self._gate(epoch, now, write=False) or self._check_key(key)
        if err is not None:
            return ReadReply(err)
        return self._served(self._latest(key, clean_only=False))


class ForgetfulRaft(RaftCore):
    """Forgets, when it restarts, whom it voted for in its current term."""

    def __init__(self, config: RaftConfig, storage: RaftStorage, rng: random.Random,
                 peers: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(config, storage, rng, peers)
        self.vote = ""


# ---- the chain core before the simulator's fixes ----


class InSyncOnReceipt(ChainCore):
    """Counts itself in sync as soon as it HOLDS its predecessor's commit point (not committed it)."""

    def on_batch(self, from_id: str, batch: Batch) -> None:
        super().on_batch(from_id, batch)
        if not self.in_sync and from_id == self.pred and batch.committed_seq <= self.last_seq:
            self.in_sync = True
            if self.role == Role.SYNCING and not self._caught_up_reported:
                self._caught_up_reported = True
                self._caught_up = self.last_seq


class VouchesWhileLagging(ChainCore):
    """Advertises its own commit point to its successor even while not in sync itself."""

    def ready(self) -> Ready:
        rd = super().ready()
        rd.messages = [
            type(m)(m.to, Batch(m.body.epoch, m.body.entries, self.committed_seq)) if isinstance(m.body, Batch) else m
            for m in rd.messages
        ]
        return rd


class KeepsStreamingAfterTransfer(ChainCore):
    """After installing a state transfer, goes on streaming to its successor from where it was."""

    def on_transfer_chunk(self, from_id: str, chunk: TransferChunk) -> None:
        kept = replace(self.down)
        super().on_transfer_chunk(from_id, chunk)
        if chunk.last and kept.state == LinkState.STREAMING and self.transfer_from is None:
            self.down = kept


# ---- broken node drivers ----


class SendsBeforeSync(NodeDriver):
    """Releases a Ready's outputs (link messages, replies) as soon as its records are applied, and
    syncs after: what the successor, the predecessor or a client learns may be lost by a crash."""

    def sends_early(self) -> bool:
        return True

    def step(self) -> Generator[Ready, None, None]:
        if not self.sends_early():
            yield from super().step()
            return
        if not self.core.has_ready():
            return
        rd = self.core.ready()
        epoch = self.core.epoch
        if rd.persist:
            self.storage.apply(rd.persist)
        self.release(rd, epoch)  # before the sync the Ready asks for
        if rd.must_sync:
            yield rd


class TailSendsBeforeSync(SendsBeforeSync):
    """`SendsBeforeSync` at the tail only: its acks and the replies they release run ahead of its disk."""

    def sends_early(self) -> bool:
        return self.core.is_tail


class SendsBeforeSyncShell(SimNode):
    """A simulated node driven by `SendsBeforeSync`, with the store's contract kept as in `EagerAckShell`."""

    driver_class = SendsBeforeSync


class EagerAckShell(SimNode):
    """A node whose tail releases its acks and replies before the Ready's sync is done.

    Everything else keeps the store's contract: records are applied in order, and a sync makes
    durable, in that order, every record applied before it (so a crash loses a suffix).
    """

    driver_class = TailSendsBeforeSync


class DirtyWatchDriver(NodeDriver):
    """Feeds its watch history with every entry it holds, dirty ones included (watchers then see
    changes that a head failure may yet undo)."""

    def release(self, rd: Ready, epoch: int) -> None:
        core, history = self.core, self.history
        if core.last_seq > history.last and history.last >= core.log_start:
            history.extend(core.uncommitted.entries(history.last + 1, core.last_seq))
        super().release(rd, epoch)


class DirtyWatchShell(SimNode):
    driver_class = DirtyWatchDriver


class DirtyRangeCore(ChainCore):
    """Serves a range from its newest versions, dirty ones included: at its last seq, no tail query."""

    def client_range(self, ticket: int, epoch: int, r: RangeRead, now: float) -> RangeReply | None:
        err = self._gate(epoch, now, write=False)
        if err is not None:
            return RangeReply(err)
        return self._range_page(r, self.last_seq)


class SplitTxnCore(ChainCore):
    """Sequences a transaction's writes one seq each (then its outcome): they commit one by one."""

    def _sequence_txn(self, op: WriteOp) -> Entry | Error:
        decided = txn.evaluate(op.txn or Txn(), self.last_seq + 1, op.request_id,
                               lambda key: self._latest(key, clean_only=False))
        for w in decided.writes:
            kind = EntryKind.DELETE if w.tombstone else EntryKind.PUT
            self._append_local([Entry(self.last_seq + 1, "", w.key, kind, w.value)])
        entry = replace(decided, seq=self.last_seq + 1, writes=())
        self._append_local([entry])
        return entry
