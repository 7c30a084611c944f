"""A watching client in the simulator: opens watches on random active nodes, resumes them after
errors, node failures and reconfigurations, and records every change it receives.

One logical watch is one `watch` operation of the history: from its `from_version`, over a key range
(everything, or one or two of the simulation's keys), for a while. Its stream goes to an active
member picked at random; when the stream breaks (a crash, a partition), or ends with an error batch
(WRONG_EPOCH, LEASE_EXPIRED, UNAVAILABLE: the node stopped serving; COMPACTED: it no longer holds
the changes after the watch's position), the watcher resumes on another member after a short
backoff, with the version of the last change it received, as an SSE client resumes with
Last-Event-ID. So the history's watch check (keychain.testing.watch_check) holds every resume to
"no gap, no duplicate": the events of one operation are checked as one stream. A watch every
member refuses as COMPACTED ends (`ok`) and the next one starts from a version the nodes hold.

The node side (what each watcher is sent) is the production decision code, `WatchCursor` over the
driver's `WatchHistory`, run by `SimNode`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from keychain.coordinator.registry import MemberState as RegistryState
from keychain.node.messages import Code, EntryKind
from keychain.testing.history import WatchEvent
from keychain.testing.sim_client import SimClient

if TYPE_CHECKING:
    from keychain.node.watch_history import WatchBatch
    from keychain.testing.sim_cluster import Simulation
    from keychain.testing.sim_world import Stream

FIRST_BATCH_TIMEOUT = 0.5  # a stream whose first batch does not come is given up
RESUME_BACKOFF = (0.02, 0.1)
WATCH_FOR = (0.5, 2.5)  # how long one logical watch lasts


@dataclass
class _Watch:
    call: int
    start: str
    end: str | None
    position: int  # the last version received (or the start): the resume token
    until: float
    resumes: list[str] = field(default_factory=list)  # why each resume happened: an error, "node down", ...
    epochs: set[int] = field(default_factory=set)  # node epochs of the batches that carried changes
    compacted: set[str] = field(default_factory=set)  # members that refused the position
    stream: Stream | None = None
    node: str = ""
    answered: bool = False  # the current stream's first batch came


class SimWatcher(SimClient):
    kind = "watcher"

    def __init__(self, sim: Simulation, wid: str) -> None:
        super().__init__(sim, wid)
        self.watch: _Watch | None = None
        self.finished: list[_Watch] = []
        self.highest = 0  # the highest version any of its watches received

    def start(self) -> None:
        self.incarnation += 1
        self.up = True
        # The topology is asked for when a watch opens or resumes, not on a period like a client's:
        # a watch stays on its node as long as it serves.
        self._refresh()
        self.timer(self.world.rng.uniform(0.1, 0.5), self._next_watch)

    # ---- one logical watch ----

    def _next_watch(self) -> None:
        end_at = self.sim.config.duration - 0.2
        if self.world.now >= end_at:
            return
        rng = self.world.rng
        keys = sorted(f"k{i}" for i in range(self.sim.config.keys))
        roll = rng.random()
        if roll < 0.5:
            start, end = "", None
        else:
            i = rng.randrange(len(keys))
            start, end = keys[i], (keys[i + 1] if i + 1 < len(keys) and roll < 0.75 else keys[i] + "\x00")
        after = rng.choice((0, self.highest, max(0, self.highest - rng.randrange(1, 20))))
        self._refresh()
        call = self.sim.recorder.invoke(self.id, "watch", start, at=self.world.now, range_end=end, from_version=after)
        self.watch = _Watch(call, start, end, after, min(end_at, self.world.now + rng.uniform(*WATCH_FOR)))
        self.timer(self.watch.until - self.world.now, self._finish, self.watch)
        self._open(self.watch)

    def _open(self, w: _Watch) -> None:
        if self.watch is not w:
            return
        topo = self.topology
        active = [m.id for m in topo.members if m.state is RegistryState.ACTIVE] if topo is not None else []
        candidates = [n for n in active if n not in w.compacted]
        if active and not candidates:  # every member refused the position: this watch is over
            self._finish(w)
            return
        if topo is None or not candidates:  # not known yet: ask again, nothing was opened
            self._refresh()
            self.timer(self.world.rng.uniform(*RESUME_BACKOFF), self._open, w)
            return
        node = self.sim.nodes[self.world.rng.choice(candidates)]
        s = self.sim.net.open(self, node, self._broken, None)
        w.stream, w.node, w.answered = s, node.id, False
        self.sim.net.stream_send(s, True, "watch", node.on_watch, s, self.id, topo.epoch, w.start.encode(),
                                 (w.end or "").encode(), w.position)
        self.timer(FIRST_BATCH_TIMEOUT, self._first_batch_due, w, s)

    def _first_batch_due(self, w: _Watch, s: Stream) -> None:
        if self.watch is w and w.stream is s and not w.answered:
            self.sim.net.close(s)
            self._resume(w, "no answer")

    def _broken(self, s: Stream) -> None:
        w = self.watch
        if w is not None and w.stream is s:
            # Why it broke, from the simulation's global view (for the trace and the tests).
            self._resume(w, "stream broken" if s.b.alive(s.b_inc) else "node down")

    def _resume(self, w: _Watch, why: str) -> None:
        w.stream = None
        w.resumes.append(why)
        self.world.note("watch-resume", self.id, w.node, why, w.position)
        self._refresh()
        self.timer(self.world.rng.uniform(*RESUME_BACKOFF), self._open, w)

    def on_watch_batch(self, s: Stream, node: str, epoch: int, batch: WatchBatch) -> None:
        w = self.watch
        if w is None or w.stream is not s:
            return
        w.answered = True
        if not batch.error.ok:
            self.sim.net.close(s)
            if batch.error.code == Code.COMPACTED:
                w.compacted.add(node)
            self._resume(w, batch.error.code.name)
            return
        rec = self.sim.recorder
        for c in batch.changes:
            put = c.kind == EntryKind.PUT
            event = WatchEvent(c.version, "put" if put else "delete", c.key.decode(), c.value.decode() if put else None)
            rec.event(w.call, event, at=self.world.now)
            w.position = c.version
            self.highest = max(self.highest, c.version)
        if batch.changes:
            w.epochs.add(epoch)
            w.compacted.clear()

    def _finish(self, w: _Watch) -> None:
        if self.watch is not w:
            return
        if w.stream is not None:
            self.sim.net.close(w.stream)
        self.sim.recorder.ok(w.call, at=self.world.now)
        self.finished.append(w)
        self.watch = None
        self.timer(self.world.rng.uniform(0.01, 0.2), self._next_watch)
