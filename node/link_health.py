"""What a chain node sees of its links and of its own progress: the link-health report it sends the
coordinator with each heartbeat (gray failures: a node alive to the coordinator that its neighbours
cannot use).

A pure core: no I/O and no clock. The node driver (`keychain.node.driver`) feeds it, with the time
passed in: a `LinkSample` of the chain core's link state at each tick and heartbeat, the start and
end of every sync, and every Batch it sends. It answers two questions:

- `report(now)`: the `LinkReport`, each condition set only once it has lasted longer than its bound
  (`keychain.timing` argues the defaults):
    - successor unreachable: a successor is configured, and the downlink has not been streaming (a
      Hello without a Welcome, or the stream could not be opened) for longer than `link_timeout`;
    - successor not acking: entries are outstanding on the downlink and its acknowledged seq has not
      moved for longer than `link_timeout`;
    - predecessor silent: a predecessor is configured and nothing came from it (a Hello, a Batch, a
      state transfer being installed) for longer than `link_timeout`;
    - stalled: a sync has been pending, or entries have waited to become durable without the
      durable seq moving, for longer than `sync_stall` (a stuck fsync, a starved driver);
    - coordinator unheard: the coordinators have answered none of this node's requests (heartbeats,
      registrations; a refusal counts as an answer) for longer than `link_timeout`, since the first
      answer. The report still reaches them if only the way back is cut: a node that hears nothing
      (its incoming traffic dropped) says so, and its dead links are then its own fault.
  A timer starts over when the peer it speaks of changes, not when only the epoch does: a link to
  the same peer that was dead stays dead across a reconfiguration (say a removed node rejoining
  after the tail), and its report carries the current epoch, which is all the coordinator weighs.
- `keepalive_due(now)`: whether the streaming downlink has carried no Batch for `keepalive_interval`.
  The driver then has the core send an empty Batch, so that an idle link is not mistaken for a dead
  one by the successor's "predecessor silent".
"""

from __future__ import annotations

from dataclasses import dataclass

from keychain.node.links import LinkState

from keychain import timing


@dataclass(frozen=True, slots=True)
class LinkReport:
    """A node's link health in `epoch` (see the module docstring); sent with each heartbeat."""

    epoch: int = 0
    successor: str = ""
    successor_unreachable: bool = False
    successor_not_acking: bool = False
    successor_acked: int = 0  # the downlink's acknowledged seq (weighed against the successor's own figures)
    predecessor: str = ""
    predecessor_silent: bool = False
    stalled: bool = False
    coordinator_unheard: bool = False  # no answer from the coordinators lately (see the module docstring)

    @property
    def failing(self) -> bool:
        """Whether any condition is set."""
        return (self.successor_unreachable or self.successor_not_acking or self.predecessor_silent
                or self.stalled)

    def describe(self) -> str:
        """The conditions set, for logs and status ("" if none)."""
        parts = []
        if self.successor_unreachable:
            parts.append(f"successor {self.successor} unreachable")
        if self.successor_not_acking:
            parts.append(f"successor {self.successor} not acking")
        if self.predecessor_silent:
            parts.append(f"predecessor {self.predecessor} silent")
        if self.stalled:
            parts.append("stalled")
        if self.coordinator_unheard:
            parts.append("coordinator unheard")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class LinkSample:
    """The chain core's link state at one moment."""

    epoch: int
    successor: str | None
    downlink: LinkState
    sent_through: int  # the last seq put on the downlink
    acked: int  # the downlink's acknowledged seq
    predecessor: str | None
    received: int  # messages taken from the predecessor so far (a counter that only grows)
    installing: bool  # a state transfer from the predecessor is being installed
    last_seq: int
    persisted_seq: int


class LinkHealth:
    """Timers over the samples of one node's links (see the module docstring)."""

    def __init__(
        self,
        *,
        link_timeout: float = timing.LINK_TIMEOUT,
        sync_stall: float = timing.SYNC_STALL,
        keepalive_interval: float = timing.KEEPALIVE_INTERVAL,
    ) -> None:
        if link_timeout <= 0 or sync_stall <= 0 or keepalive_interval <= 0:
            raise ValueError("link-health bounds must be positive")
        self.link_timeout = link_timeout
        self.sync_stall = sync_stall
        self.keepalive_interval = keepalive_interval
        self._last: LinkSample | None = None
        self._streaming_at = 0.0  # the downlink was last seen streaming (or its peer/epoch changed)
        self._acked_at = 0.0  # the downlink's acked seq last moved, or entries became outstanding
        self._heard_at = 0.0  # the predecessor was last heard (or its peer/epoch changed)
        self._durable_at = 0.0  # the durable seq last moved, or nothing waited to become durable
        self._sync_since: float | None = None  # a sync pending since then
        self._batch_at = 0.0  # the last Batch went to the successor
        self._answered_at: float | None = None  # a coordinator last answered (None: never yet)

    # ---- inputs ----

    def observe(self, now: float, s: LinkSample) -> None:
        """The core's link state at `now`."""
        last = self._last
        if last is None or s.successor != last.successor:
            self._streaming_at = self._acked_at = self._batch_at = now
        elif s.sent_through > s.acked and (s.acked != last.acked or last.sent_through <= last.acked):
            self._acked_at = now
        if s.downlink in (LinkState.STREAMING, LinkState.TRANSFER) or s.successor is None:
            self._streaming_at = now
        if s.sent_through <= s.acked or s.downlink is not LinkState.STREAMING:
            self._acked_at = now
        if (last is None or s.predecessor != last.predecessor or s.received != last.received
                or s.installing or s.predecessor is None):
            self._heard_at = now
        if last is None or s.persisted_seq != last.persisted_seq or s.last_seq <= s.persisted_seq:
            self._durable_at = now
        self._last = s

    def sync_begun(self, now: float) -> None:
        """The driver asked for a sync."""
        self._sync_since = now

    def sync_done(self, now: float) -> None:
        """The sync asked for completed."""
        self._sync_since = None
        self._durable_at = now

    def coordinator_answered(self, now: float) -> None:
        """A coordinator answered one of the node's requests (a refusal included)."""
        self._answered_at = now

    def batch_sent(self, now: float) -> None:
        """A Batch went down the link (a keepalive included)."""
        self._batch_at = now

    # ---- outputs ----

    def keepalive_due(self, now: float) -> bool:
        """Whether the streaming downlink has been idle for a keepalive interval."""
        s = self._last
        return (s is not None and s.successor is not None and s.downlink is LinkState.STREAMING
                and now - self._batch_at >= self.keepalive_interval)

    def stalled(self, now: float) -> bool:
        """Whether a sync has been pending, or entries have waited to become durable, for longer than
        the bound. A stalled node does not register to rejoin either: it would stall the chain again
        the moment it is given work, and each removal lengthens its re-admission hold."""
        s = self._last
        return ((self._sync_since is not None and now - self._sync_since > self.sync_stall)
                or (s is not None and s.last_seq > s.persisted_seq and now - self._durable_at > self.sync_stall))

    def report(self, now: float) -> LinkReport:
        """The conditions that have lasted longer than their bounds at `now`."""
        s = self._last
        if s is None:
            return LinkReport()
        stalled = self.stalled(now)
        return LinkReport(
            epoch=s.epoch,
            successor=s.successor or "",
            successor_unreachable=s.successor is not None and now - self._streaming_at > self.link_timeout,
            successor_not_acking=(s.successor is not None and s.sent_through > s.acked
                                  and now - self._acked_at > self.link_timeout),
            successor_acked=s.acked,
            predecessor=s.predecessor or "",
            predecessor_silent=s.predecessor is not None and now - self._heard_at > self.link_timeout,
            stalled=stalled,
            coordinator_unheard=self._answered_at is not None and now - self._answered_at > self.link_timeout,
        )
