"""The simulated world: virtual time, one event queue, process clocks and disks, and the network.

Everything in a simulation run happens through `World`: a heap of (time, sequence, callback)
events popped in order, one `random.Random` for every decision, and a trace of what was
delivered. Nothing here reads the wall clock, sleeps or touches a socket, so a seed fixes the run.

- `Process`: a coordinator, chain node or client. It can be up or down; each restart is a new
  *incarnation*, and a timer or message meant for an older incarnation is silently dropped (the
  process that would have handled it is gone). It can also be *paused* (as by SIGSTOP): its timers
  and the messages delivered to it wait, in order, until it resumes, and it sends nothing meanwhile
  (it runs nothing); its streams stay open, as TCP connections to a stopped process do. Each process has its own clock, running at its own
  rate (`rate` local seconds per true second: clock drift) from its own offset, and its own disk,
  whose sync takes `disk_latency` true seconds (a slow disk raises it; a stalled one holds every
  sync begun before `stalled_until` until then).
- `Network`: datagrams (unary RPCs, Raft messages) may be dropped, duplicated, delayed and so
  reordered; *streams* (the chain links, state transfers) are FIFO and never lose a message
  unless they break, as a gRPC stream over TCP: a partition, a crash or a send into a cut path
  breaks the stream, and each surviving end learns it after a detection delay. Partitions are
  one-way blocks between ordered pairs of processes; a symmetric partition blocks both ways. A
  process can also have its *port closed*: nobody can connect to it (no stream opened to it, no
  request delivered to it), while what it opens itself (its streams, its calls and their answers)
  still works, as when a firewall drops what arrives at its listening port.

Written by hand rather than on a discrete-event library: the loop is a dozen lines, and the
simulator's value lies in owning every source of nondeterminism (event order, timers, message
fates) in one place that a seed controls.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Callback = Callable[..., None]
# Datagrams that answer a call: they travel back on the caller's own connection, so a closed port
# at the caller does not stop them.
REPLIES = frozenset({"coord-reply", "kv-reply", "vreply", "probe-reply"})


class World:
    """The event queue, virtual time (true seconds) and the run's one random source."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self._queue: list[tuple[float, int, Callback, tuple[Any, ...]]] = []
        self._seq = 0
        self.events = 0
        self.trace: list[tuple[Any, ...]] = []  # what happened, in order: (time, what, ...)
        self.stopped = False

    def at(self, when: float, fn: Callback, *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, fn, args))

    def after(self, delay: float, fn: Callback, *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def note(self, *what: Any) -> None:
        self.trace.append((round(self.now, 9), *what))

    def run(self, until: float) -> None:
        """Run events in time order until `until` (or until `stop()`)."""
        queue = self._queue
        pop = heapq.heappop
        while queue and not self.stopped:
            when, _, fn, args = queue[0]
            if when > until:
                break
            pop(queue)
            self.now = when
            self.events += 1
            fn(*args)
        if not self.stopped:
            self.now = max(self.now, until)

    def stop(self) -> None:
        self.stopped = True

    def trace_hash(self) -> str:
        """A digest of the whole trace: two runs with equal hashes did the same things in the same order."""
        h = hashlib.sha256()
        for item in self.trace:
            h.update(repr(item).encode())
        return h.hexdigest()[:16]


class Process:
    """Something that runs, crashes and restarts: owns its clock, its disk and its incarnation."""

    kind = "process"

    def __init__(self, world: World, pid: str) -> None:
        self.world = world
        self.id = pid
        self.up = False
        self.incarnation = 0
        self.rate = 1.0  # local seconds per true second
        self.offset = world.rng.uniform(0.0, 1000.0)  # clocks agree on nothing but their rate bound
        self.disk_latency = 0.0005  # true seconds per sync
        self.retired = False  # stopped for good (a node that left the chain)
        self.paused = False  # stopped in place: what it would run waits in `_held` until it resumes
        self._held: list[tuple[Callback, tuple[Any, ...]]] = []
        self.stalled_until = 0.0  # a sync begun before this true time ends no earlier than it

    def local(self) -> float:
        """This process's clock reading now."""
        return self.offset + self.rate * self.world.now

    def timer(self, local_delay: float, fn: Callback, *args: Any) -> None:
        """Call `fn(*args)` after `local_delay` seconds of this process's clock, unless it crashed."""
        self.world.after(local_delay / self.rate, self._fire, self.incarnation, fn, args)

    def _fire(self, incarnation: int, fn: Callback, args: tuple[Any, ...]) -> None:
        if self.up and self.incarnation == incarnation:
            if self.paused:
                self.hold(self._fire, incarnation, fn, args)
            else:
                fn(*args)

    def hold(self, fn: Callback, *args: Any) -> None:
        """Keep `fn(*args)`, due while this process is paused, until it resumes."""
        self._held.append((fn, args))

    def pause(self) -> None:
        """Stop in place: no timer fires and no message is handled until `resume()`."""
        self.paused = True

    def resume(self) -> None:
        """Carry on: everything that fell due while paused runs now, in the order it fell due (a
        timer that came due several times fired once: each fire schedules the next)."""
        self.paused = False
        held, self._held = self._held, []
        for fn, args in held:
            self.world.at(self.world.now, fn, *args)

    def sync_delay(self) -> float:
        """True seconds one fsync takes on this process's disk now."""
        return max(self.disk_latency * self.world.rng.uniform(0.5, 1.5), self.stalled_until - self.world.now)

    def alive(self, incarnation: int) -> bool:
        return self.up and self.incarnation == incarnation


@dataclass
class Stream:
    """A FIFO, lossless-until-broken bidirectional stream opened by `a` to `b`."""

    id: int
    a: Process
    b: Process
    a_inc: int
    b_inc: int
    on_break_a: Callback | None
    on_break_b: Callback | None
    broken: bool = False
    last_ab: float = 0.0  # delivery time of the last message a -> b (FIFO)
    last_ba: float = 0.0


class Network:
    """Message fates: latency, loss, duplication, partitions, and streams that break."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.latency = (0.0002, 0.002)  # one-way, uniform, true seconds
        self.drop = 0.0  # datagram loss probability
        self.duplicate = 0.0  # datagram duplication probability
        self.spike = 0.0  # probability of an extra delay of up to `spike_delay`
        self.spike_delay = 0.0
        self.detect = (0.02, 0.2)  # how long an end takes to notice its stream broke
        self.blocked: set[tuple[str, str]] = set()  # (from, to) pairs that cannot talk
        self.closed: set[str] = set()  # processes nobody can connect to (their listening port is blocked)
        self._streams: dict[int, Stream] = {}
        self._stream_ids = 0
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0

    # ---- partitions ----

    def block(self, src: str, dst: str) -> None:
        """Cut the path src -> dst (call `cut_streams()` once the partition is complete)."""
        self.blocked.add((src, dst))

    def heal(self) -> None:
        self.blocked.clear()
        self.closed.clear()

    def unblock(self, src: str, dst: str) -> None:
        self.blocked.discard((src, dst))

    # ---- datagrams ----

    def _delay(self) -> float:
        rng = self.world.rng
        d = rng.uniform(*self.latency)
        if self.spike and rng.random() < self.spike:
            d += rng.uniform(0.0, self.spike_delay)
        return d

    def send(self, src: Process, dst: Process, label: str, fn: Callback, *args: Any) -> bool:
        """A datagram from `src` to `dst`: `fn(*args)` runs at `dst` if it arrives. False if lost."""
        self.sent += 1
        rng = self.world.rng
        if ((src.id, dst.id) in self.blocked or (dst.id in self.closed and label not in REPLIES)
                or (self.drop and rng.random() < self.drop)):
            self.dropped += 1
            return False
        inc = dst.incarnation
        self.world.after(self._delay(), self._deliver, src.id, dst, inc, label, fn, args)
        if self.duplicate and rng.random() < self.duplicate:
            self.duplicated += 1
            self.world.after(self._delay(), self._deliver, src.id, dst, inc, label, fn, args)
        return True

    def _deliver(self, src: str, dst: Process, inc: int, label: str, fn: Callback, args: tuple[Any, ...]) -> None:
        if dst.up and dst.incarnation == inc:
            if dst.paused:
                dst.hold(self._deliver, src, dst, inc, label, fn, args)
                return
            self.world.trace.append((self.world.now, label, src, dst.id))
            fn(*args)

    # ---- streams ----

    def open(self, a: Process, b: Process, on_break_a: Callback | None, on_break_b: Callback | None) -> Stream:
        """A stream from `a` to `b`. It is broken at once (both ends told) if `b` cannot be reached."""
        self._stream_ids += 1
        s = Stream(self._stream_ids, a, b, a.incarnation, b.incarnation, on_break_a, on_break_b)
        self._streams[s.id] = s
        if not b.up or self._cut(s):
            self.break_stream(s)
        return s

    def close(self, s: Stream) -> None:
        """Close a stream on purpose: messages in flight are dropped, nobody is told."""
        s.broken = True
        self._streams.pop(s.id, None)

    def stream_send(self, s: Stream, from_a: bool, label: str, fn: Callback, *args: Any) -> bool:
        if s.broken:
            return False
        src, dst = (s.a, s.b) if from_a else (s.b, s.a)
        dst_inc = s.b_inc if from_a else s.a_inc
        if not dst.alive(dst_inc) or (src.id, dst.id) in self.blocked or s.b.id in self.closed:
            self.break_stream(s)
            return False
        self.sent += 1
        now = self.world.now
        if from_a:
            when = s.last_ab = max(now + self._delay(), s.last_ab)
        else:
            when = s.last_ba = max(now + self._delay(), s.last_ba)
        self.world.at(when, self._deliver_stream, s, src.id, dst, dst_inc, label, fn, args)
        return True

    def _deliver_stream(self, s: Stream, src: str, dst: Process, inc: int, label: str, fn: Callback,
                        args: tuple[Any, ...]) -> None:
        if s.broken:
            return
        if not dst.alive(inc):
            self.break_stream(s)
            return
        if dst.paused:  # the bytes wait in its socket buffer
            dst.hold(self._deliver_stream, s, src, dst, inc, label, fn, args)
            return
        self.world.trace.append((self.world.now, label, src, dst.id))
        fn(*args)

    def break_stream(self, s: Stream) -> None:
        """The stream fails: messages in flight are lost and each live end learns it after a delay."""
        if s.broken:
            return
        s.broken = True
        self._streams.pop(s.id, None)
        rng = self.world.rng
        for end, inc, cb in ((s.a, s.a_inc, s.on_break_a), (s.b, s.b_inc, s.on_break_b)):
            if cb is not None and end.alive(inc):
                self.world.after(rng.uniform(*self.detect), end._fire, inc, cb, (s,))

    def process_down(self, p: Process) -> None:
        """`p` crashed or stopped: every stream it is an end of breaks."""
        for s in list(self._streams.values()):
            if s.a is p or s.b is p:
                self.break_stream(s)

    def _cut(self, s: Stream) -> bool:
        """Whether `s` crosses a blocked path (a stream needs both ways) or was opened to a closed port."""
        return (s.a.id, s.b.id) in self.blocked or (s.b.id, s.a.id) in self.blocked or s.b.id in self.closed

    def cut_streams(self) -> None:
        """Break every open stream that now crosses a blocked path or leads to a closed port."""
        for s in list(self._streams.values()):
            if self._cut(s):
                self.break_stream(s)
