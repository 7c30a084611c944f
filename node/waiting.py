"""Client requests a chain node holds until their outcome is known: writes until their entries
commit, dirty reads until the tail names the committed version.

Bookkeeping only: `ChainCore` decides what a request waits for and what its answer is; this module
keeps who waits for what, and hands back the requests whose wait is over. A ticket is the shell's
name for one client request (see `ChainCore.client_write` / `client_read`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from keychain.node.messages import RequestOutcome, WriteReply, WriteResult


@dataclass(slots=True)
class _WriteTicket:
    results: list[WriteResult | None]  # one per op; None until decided
    waiting: int  # ops not yet decided


class WaitingWrites:
    """Write batches (tickets) whose ops wait for their entries to commit. A ticket's reply is
    released when its last op's seq commits; the ops of one ticket may wait on different seqs."""

    def __init__(self) -> None:
        self._tickets: dict[int, _WriteTicket] = {}
        self._by_seq: dict[int, list[tuple[int, int, RequestOutcome]]] = {}  # seq -> (ticket, op, outcome)
        self._seqs: list[int] = []  # heap of the keys of _by_seq

    def __contains__(self, ticket: int) -> bool:
        return ticket in self._tickets

    def wait(self, ticket: int, results: list[WriteResult | None],
             waits: list[tuple[int, int, RequestOutcome]]) -> None:
        """Hold `ticket`: its decided `results`, and for each (seq, op index, outcome) in `waits` the op
        whose result is `outcome` once `seq` commits."""
        self._tickets[ticket] = _WriteTicket(results, len(waits))
        for seq, i, outcome in waits:
            if seq not in self._by_seq:
                self._by_seq[seq] = []
                heapq.heappush(self._seqs, seq)
            self._by_seq[seq].append((ticket, i, outcome))

    def commit_through(self, seq: int) -> list[tuple[int, WriteReply]]:
        """Every seq through `seq` committed: the replies of the tickets now fully decided."""
        replies = []
        while self._seqs and self._seqs[0] <= seq:
            for ticket, i, outcome in self._by_seq.pop(heapq.heappop(self._seqs)):
                t = self._tickets[ticket]
                t.results[i] = outcome.result()
                t.waiting -= 1
                if t.waiting == 0:
                    del self._tickets[ticket]
                    replies.append((ticket, WriteReply(results=tuple(r for r in t.results if r))))
        return replies

    def abandon(self, unknown: WriteResult) -> list[tuple[int, WriteReply]]:
        """Answer every ticket now: each op not yet decided gets `unknown`."""
        for waiters in self._by_seq.values():
            for ticket, i, _ in waiters:
                self._tickets[ticket].results[i] = unknown
        replies = [(ticket, WriteReply(results=tuple(r or unknown for r in t.results)))
                   for ticket, t in self._tickets.items()]
        self._tickets.clear()
        self._by_seq.clear()
        self._seqs.clear()
        return replies


class WaitingReads:
    """Reads of dirty keys: first in a backlog, then in one version query to the tail per Ready."""

    def __init__(self) -> None:
        self.backlog: list[tuple[int, bytes]] = []  # (ticket, key), not yet asked about
        self._queries: dict[int, list[tuple[int, bytes]]] = {}  # query id -> the reads it answers
        self._next_query = 1

    def hold(self, ticket: int, key: bytes) -> None:
        self.backlog.append((ticket, key))

    def take_backlog(self) -> list[tuple[int, bytes]]:
        backlog, self.backlog = self.backlog, []
        return backlog

    def ask(self, reads: list[tuple[int, bytes]]) -> int:
        """`reads` wait for one version query: its id."""
        qid = self._next_query
        self._next_query += 1
        self._queries[qid] = reads
        return qid

    def answered(self, query_id: int) -> list[tuple[int, bytes]] | None:
        """The reads waiting for `query_id` (no longer held), or None if it is unknown."""
        return self._queries.pop(query_id, None)
