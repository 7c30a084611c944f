"""Which nodes have left this proxy's requests unanswered for too long (pure: times are arguments).

A node is *silent* from the moment the oldest request it has not answered was sent, counting only
requests sent since its last reply: a reply of any kind (even a refusal) shows the node reachable
and making progress, and clears the slate. A request that failed in transit (no connection, a
deadline, a broken stream) stays counted until the next reply. So a node that never answers is
silent from the first request the proxy sent it, whether the proxy keeps sending or not.

Silence alone does not tell a dead node from one that is waiting: a head's write is answered only
once the whole chain has acknowledged it, so a head waiting on a reconfiguration below it, or on
a stalled member, leaves writes unanswered while it is perfectly reachable. So a node silent for
longer than the bound is first *probed* (`to_probe`): the shell sends it a request any live node
answers at once (its status). An answer clears the slate like any reply: the node is reachable,
and what it waits on is for the nodes' own link reports to name. Only a node that also leaves
`probes` probes in a row unanswered (each on its deadline) is *due*: a live node slowed by a
machine loaded past its cores answers one of two, where a single missed probe removed a healthy
head end to end. `due(now, bound, every)` names those whose last report is at least `every` old, and the shell reports them to the
coordinator (keychain.timing, PROXY_SILENCE and PROXY_PROBE_TIMEOUT).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field


@dataclass
class _Node:
    waiting: dict[int, float] = field(default_factory=dict)  # unanswered requests in flight: id -> sent at
    failed_since: float | None = None  # the oldest request since the last reply that failed in transit
    reported_at: float | None = None
    probe: int | None = None  # the probe in flight, if any
    probes_failed: int = 0  # probes unanswered since the last reply


@dataclass(frozen=True, slots=True)
class Silent:
    address: str
    since: float  # when the oldest unanswered request was sent
    silent_for: float  # seconds, as of the `now` it was computed for


class NodeReachability:
    """Per node address: the requests this proxy is waiting on, and since when it waits in vain."""

    def __init__(self, probes: int = 2) -> None:
        if probes < 1:
            raise ValueError(f"a node is reported after at least one unanswered probe, not {probes}")
        self.probes = probes  # unanswered probes in a row before a node is due
        self._nodes: dict[str, _Node] = {}
        self._ids = itertools.count(1)

    def sent(self, address: str, now: float) -> int:
        """A request to `address` leaves now; the id to pass to `answered` or `failed`."""
        request = next(self._ids)
        self._nodes.setdefault(address, _Node()).waiting[request] = now
        return request

    def probe_sent(self, address: str, now: float) -> int:
        """A probe of `address` (see `to_probe`) leaves now; its id, for `answered` or `failed`."""
        request = self.sent(address, now)
        self._nodes[address].probe = request
        return request

    def answered(self, address: str, request: int) -> None:
        """`address` replied to `request`: it is reachable; nothing before counts any more."""
        node = self._nodes.get(address)
        if node is None:
            return
        sent_at = node.waiting.pop(request, None)
        node.failed_since = None
        node.reported_at = None
        node.probes_failed = 0
        if sent_at is not None:  # requests sent before this one and still waiting were overtaken
            node.waiting = {r: t for r, t in node.waiting.items() if t > sent_at}
        if node.probe not in node.waiting:  # answered, or overtaken: its late failure says nothing
            node.probe = None

    def failed(self, address: str, request: int) -> None:
        """`request` to `address` got no reply (no connection, a deadline, a transport error)."""
        node = self._nodes.get(address)
        if node is None:
            return
        sent_at = node.waiting.pop(request, None)
        if sent_at is not None and (node.failed_since is None or sent_at < node.failed_since):
            node.failed_since = sent_at
        if request == node.probe:
            node.probe = None
            node.probes_failed += 1

    def silent_since(self, address: str) -> float | None:
        """When the oldest request `address` has left unanswered was sent; None if there is none."""
        node = self._nodes.get(address)
        if node is None:
            return None
        times = [*node.waiting.values(), *([node.failed_since] if node.failed_since is not None else [])]
        return min(times) if times else None

    def to_probe(self, now: float, bound: float) -> list[str]:
        """The nodes silent for longer than `bound` that have no probe in flight and fewer than
        `probes` unanswered: the shell probes each (`probe_sent`) before it may report it."""
        out = []
        for address, node in self._nodes.items():
            since = self.silent_since(address)
            if since is not None and now - since > bound and node.probe is None and node.probes_failed < self.probes:
                out.append(address)
        return out

    def due(self, now: float, bound: float, every: float) -> list[Silent]:
        """The nodes silent for longer than `bound`, whose last `probes` probes went unanswered, not
        reported in the last `every` seconds; each is counted as reported now."""
        out = []
        for address, node in self._nodes.items():
            since = self.silent_since(address)
            if since is None or now - since <= bound or node.probes_failed < self.probes:
                continue
            if node.reported_at is not None and now - node.reported_at < every:
                continue
            node.reported_at = now
            out.append(Silent(address, since, now - since))
        return out

    def next_due(self, bound: float, every: float) -> float | None:
        """The earliest time at which `to_probe` or `due` could name a node, given no new replies and
        no probe finishing; None while nothing is unanswered (or only probes are in flight)."""
        times = []
        for address, node in self._nodes.items():
            since = self.silent_since(address)
            if since is None or node.probe is not None:
                continue  # a probe in flight: its answer or its deadline wakes the shell
            at = since + bound
            times.append(at if node.reported_at is None else max(at, node.reported_at + every))
        return min(times) if times else None

    def retain(self, addresses: set[str]) -> None:
        """Forget the nodes no longer in the chain."""
        for address in [a for a in self._nodes if a not in addresses]:
            del self._nodes[address]
