"""Gray failures: which chain member to remove when every node heartbeats but the chain cannot
proceed, judged from the nodes' link reports and the proxies' reports.

A pure core: no I/O and no clock; time is passed in. Its inputs are the last report of each node
(`keychain.node.link_health.LinkReport`, with the node's commit point, from its heartbeat) and the
reports of proxies that cannot use a node (`ProxyReport`). Its output is a `Verdict`: one member of
a chain to remove, and why. The supervisor (supervision.py) then revokes that member's lease and
removes it like a drained node (lease.py), and holds back its re-admission (readmission.py).

Which reports count:
- Only claims about a link both of whose ends still heartbeat (heard within `report_ttl`): a node
  silent to the coordinator is the lease's business (lease.py), and its neighbours' reports about
  it say nothing more - were they weighed, a crashed head would cost its live successor too.
- Only fresh ones (`report_ttl`, `proxy_report_ttl`) of the chain's current epoch, naming the
  neighbours the node has in that epoch: a stale report, or one about an older configuration, is
  never acted on.
- A node's report is a set of claims: "my successor S is unreachable / does not ack", "my
  predecessor P is silent", "I am stalled". A proxy's report claims "I cannot use N".
- A claim about a link is *disputed* when the other end's fresh report says the same link works:
  S says P is not silent while P says S is unreachable or does not ack (unless S's commit point is
  past what P saw acked: S did ack, the acks are being lost, and the two reports agree), or P says
  its link to S is fine while S says P is silent. A disputed claim is one report against another,
  and counts only with a second, independent claim against the same node (from another peer, a
  proxy, or its own report that it is stalled). So one stale or lying report alone never removes
  a node whose own report disagrees.
- "My successor does not ack" is set aside while that successor reports its own downlink failing:
  acks flow back up the chain, so a link dead further down stops every ack above it, and only the
  lowest failing link says where the fault is.
- A proxy that claims two or more members of a chain at once is itself the likely culprit (cut
  off from the chain, not the chain from it): its claims about that chain are set aside.
- A proxy's claim counts only against the head (a head that accepts no writes): the proxy retries a
  read left waiting on another member elsewhere, and a member just promoted keeps reads waiting
  until it is level in its new epoch, which a proxy cannot tell from a fault.
- A proxy's claim against N is set aside while a link at or below N is reported failing (N or a
  later member says its successor is unreachable or does not ack): a write to N waits for acks
  from below, so N looks silent to a proxy whatever the fault down the chain; the link reports say
  where it is. So is one whose silence began before the chain's current epoch (as the coordinator
  saw it begin): a write left waiting under the old configuration says nothing of the new one.

Whom to remove, in this order:
1. A node that reports itself stalled (a sync pending or entries not durable past the bound).
2. A node implicated in dead links with two different peers - counting peers of links that cost
   it a neighbour within `history` (a head whose own outgoing traffic is dropped first loses its
   successor, then is implicated with the next one) - is the culprit: a node that reports everyone
   unreachable, or that everyone reports, is itself the fault.
3. Otherwise a dead link P -> S removes S, the later of its two ends: P holds every entry S holds
   (entries flow down the chain), so S is always the safer one to lose. Unless exactly one end
   reports that the coordinators' answers stopped reaching it (`coordinator_unheard`) while its
   heartbeats reach them: that end hears nothing, and it is the one removed (a head whose incoming
   traffic is dropped, which its successor's silence alone would not tell from a successor that
   cannot reach it; removing the successor would cost an innocent member and leave the chain stuck
   on the head). A proxy's claim removes the node it names.
Rules 2 and 3 wait until no new claim about the chain has appeared for `settle` (two heartbeat
intervals): the claims a single fault causes reach the coordinator over a heartbeat interval or so,
in any order.
A middle cut off on both links must be seen as the culprit, not cost its successor first because
the claims about one link came first; and a tail cut off must not make its predecessor a culprit
because the "not acking" above it came before the predecessor's report that explains it.
Every candidate must pass `removable` (the supervisor's rule that the chain keeps a member in sync
holding every acknowledged write, and never loses its last active member); a dead link whose
later end may not go removes its earlier end if that one may. Where several candidates qualify
the one nearest the tail goes first (each removal is decided against the configuration the last
one left; one per chain at a time).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from keychain.coordinator.registry import ChainState
from keychain.node.link_health import LinkReport

from keychain import timing

PROXY = "proxy:"  # a proxy's claims are made in the name PROXY + its id, never a node id


@dataclass(frozen=True, slots=True)
class ProxyReport:
    """A proxy (`reporter`) could not use `node` (no answer; for a head, no write accepted) for
    longer than its bound, while using `chain` at `epoch`."""

    chain: str
    reporter: str
    node: str
    epoch: int
    unreachable_for: float = 0.0  # seconds; a report under the bound (`link_timeout`) does not count


@dataclass(frozen=True, slots=True)
class Verdict:
    chain: str
    node: str
    epoch: int  # the chain's epoch the verdict was reached in
    reason: str
    survivor: str = ""  # the other end of the dead link that removed `node`, if that was the rule


@dataclass(frozen=True, slots=True)
class _Claim:
    accuser: str
    accused: str
    what: str
    disputed: bool = False


@dataclass(frozen=True, slots=True)
class _NodeReport:
    report: LinkReport
    committed_seq: int
    at: float


@dataclass
class Suspicion:
    report_ttl: float = timing.REPORT_TTL
    proxy_report_ttl: float = timing.PROXY_REPORT_TTL
    history: float = 5 * timing.LINK_TIMEOUT + timing.REMOVAL_AFTER
    settle: float = 2 * timing.HEARTBEAT_INTERVAL
    reports: dict[tuple[str, str], _NodeReport] = field(default_factory=dict)
    # (chain, proxy, node) -> (epoch, reported at, since when the node was silent to the proxy)
    proxies: dict[tuple[str, str, str], tuple[int, float, float]] = field(default_factory=dict)
    epochs: dict[str, tuple[int, float]] = field(default_factory=dict)  # each chain's epoch, seen since
    lost: dict[tuple[str, str], list[tuple[str, float]]] = field(default_factory=dict)  # neighbours a node lost
    heard: dict[tuple[str, str], float] = field(default_factory=dict)  # each node's last heartbeat
    # Each claim (chain, accuser, accused) that counts: since when, and when it last counted. A claim
    # missing for a moment (its reporter's first heartbeat in a new epoch) keeps its age.
    counting: dict[tuple[str, str, str], tuple[float, float]] = field(default_factory=dict)

    # ---- inputs ----

    def heartbeat(self, chain: str, node: str, now: float) -> None:
        """`node` heartbeated at `now` (with a report or without)."""
        self.heard[(chain, node)] = now

    def node_reported(self, chain: str, node: str, report: LinkReport, committed_seq: int, now: float) -> None:
        """`node`'s heartbeat at `now` carried `report` and its commit point."""
        self.heard[(chain, node)] = now
        self.reports[(chain, node)] = _NodeReport(report, committed_seq, now)

    def proxy_reported(self, report: ProxyReport, now: float) -> None:
        """A proxy reported at `now` that it cannot use `report.node`."""
        self.proxies[(report.chain, report.reporter, report.node)] = (report.epoch, now, now - report.unreachable_for)

    def removed(self, verdict: Verdict, now: float) -> None:
        """`verdict`'s removal applied at `now`: its survivor lost a neighbour to a dead link."""
        if verdict.survivor:
            self.lost.setdefault((verdict.chain, verdict.survivor), []).append((verdict.node, now))
        self.reports.pop((verdict.chain, verdict.node), None)

    def forget(self, chains: list[ChainState], now: float) -> None:
        """Drop what concerns nodes no longer in a chain, and old history."""
        members = {(c.name, m.id) for c in chains for m in c.members}
        for record in (self.reports, self.heard):
            for key in [k for k in record if k not in members]:
                del record[key]
        for pkey in [k for k, (_, at, _) in self.proxies.items() if now - at > self.proxy_report_ttl]:
            del self.proxies[pkey]
        for key, peers in list(self.lost.items()):
            peers[:] = [(p, at) for p, at in peers if now - at <= self.history]
            if not peers or key not in members:
                del self.lost[key]

    # ---- the decision ----

    def suspected(self, state: ChainState, node: str, now: float) -> str:
        """The undisputed claims against `node` now, for status ("" if none)."""
        return "; ".join(f"{c.what} (said {c.accuser})" for c in self._claims(state, now)
                         if c.accused == node and not c.disputed)

    def verdict(self, state: ChainState, now: float, removable: Callable[[str], bool]) -> Verdict | None:
        """The member of `state` to remove now for a gray failure, or None (see the module docstring)."""
        claims = self._claims(state, now)
        counted = [c for c in claims if not c.disputed or any(
            (o.accused == c.accused and o.accuser not in (c.accuser, c.accused)) or o.accuser == o.accused == c.accused
            for o in claims if o is not c)]
        for c in counted:
            key = (state.name, c.accuser, c.accused)
            began, last = self.counting.get(key, (now, now))
            self.counting[key] = (began if now - last <= self.report_ttl else now, now)
        self.counting = {k: v for k, v in self.counting.items() if now - v[1] <= self.report_ttl}
        if not counted:
            return None
        newest = max(self.counting[(state.name, c.accuser, c.accused)][0] for c in counted)
        order = [m.id for m in state.members]
        nearest_tail = sorted(order, key=order.index, reverse=True)

        def verdict(node: str, reason: str, survivor: str = "") -> Verdict:
            return Verdict(state.name, node, state.epoch, reason, survivor)

        # 1. Stalled, by its own word.
        for node in nearest_tail:
            if any(c.accuser == c.accused == node for c in counted) and removable(node):
                return verdict(node, "stalled: work pending without progress")
        settled = counted if now - newest >= self.settle else []
        unheard = self._unheard(state, now)
        # 2. Implicated with two different peers (now, or a neighbour lost to a dead link lately).
        peers: dict[str, set[str]] = {node: {p for p, _ in self.lost.get((state.name, node), [])} for node in order}
        for c in settled:
            if c.accuser != c.accused:
                for a, b in ((c.accuser, c.accused), (c.accused, c.accuser)):
                    if a in peers:
                        peers[a].add(b)
        culprits = sorted((n for n in order if len(peers[n]) >= 2), key=lambda n: (len(peers[n]), order.index(n)),
                          reverse=True)
        for node in culprits:
            if removable(node):
                return verdict(node, f"its links to {', '.join(sorted(peers[node]))} are dead")
        # 3. One dead link: its later end (a proxy's claim: the node it names).
        for c in sorted(settled, key=lambda c: max(order.index(n) for n in (c.accuser, c.accused) if n in order),
                        reverse=True):
            if c.accuser == c.accused:
                continue
            if c.accuser.startswith(PROXY):
                if removable(c.accused):
                    return verdict(c.accused, f"{c.what} (said {c.accuser})")
                continue
            first, second = sorted((c.accuser, c.accused), key=order.index)
            ends = ((second, first), (first, second))
            if (first in unheard) != (second in unheard):  # the end that hears nothing, and no other
                ends = ((first, second),) if first in unheard else ((second, first),)
            for node, survivor in ends:
                if removable(node):
                    return verdict(node, f"the link {first} -> {second} is dead: {c.what} (said {c.accuser})",
                                   survivor)
        return None

    def _fresh(self, state: ChainState, now: float) -> dict[str, _NodeReport]:
        """Each member's fresh report of the chain's epoch, naming its neighbours in it."""
        order = [m.id for m in state.members]
        fresh: dict[str, _NodeReport] = {}
        for i, node in enumerate(order):
            r = self.reports.get((state.name, node))
            pred, succ = (order[i - 1] if i > 0 else ""), (order[i + 1] if i + 1 < len(order) else "")
            if (r is not None and now - r.at <= self.report_ttl and r.report.epoch == state.epoch
                    and r.report.successor == succ and r.report.predecessor == pred):
                fresh[node] = r
        return fresh

    def _unheard(self, state: ChainState, now: float) -> set[str]:
        """The members whose fresh report says the coordinators' answers stopped reaching them."""
        return {node for node, r in self._fresh(state, now).items() if r.report.coordinator_unheard}

    def _claims(self, state: ChainState, now: float) -> list[_Claim]:
        """Every fresh claim about `state` in its epoch, disputes marked, over-reaching proxies set aside."""
        order = [m.id for m in state.members]
        fresh = self._fresh(state, now)
        claims: list[_Claim] = []

        def alive(node: str) -> bool:
            at = self.heard.get((state.name, node))
            return at is not None and now - at <= self.report_ttl

        for node, r in fresh.items():
            rep = r.report
            if rep.stalled:
                claims.append(_Claim(node, node, f"{node} stalled"))
            s = rep.successor
            other = fresh.get(s)
            blocked_below = other is not None and (other.report.successor_unreachable
                                                   or other.report.successor_not_acking)
            if s and alive(s) and (rep.successor_unreachable or (rep.successor_not_acking and not blocked_below)):
                what = f"successor {s} {'unreachable' if rep.successor_unreachable else 'not acking'}"
                disputed = (other is not None and not other.report.predecessor_silent
                            and not (rep.successor_not_acking and other.committed_seq > rep.successor_acked))
                claims.append(_Claim(node, s, what, disputed))
            p = rep.predecessor
            if p and alive(p) and rep.predecessor_silent:
                other = fresh.get(p)
                disputed = (other is not None and not other.report.successor_unreachable
                            and not other.report.successor_not_acking)
                claims.append(_Claim(node, p, f"predecessor {p} silent", disputed))
        # The highest member whose downlink is reported failing: writes through it and above wait on it.
        blocked_to = max((order.index(n) for n, r in fresh.items()
                          if r.report.successor_unreachable or r.report.successor_not_acking), default=-1)
        # An epoch in place when this leader first looked began long ago, as far as it can tell.
        seen_epoch, epoch_since = self.epochs.get(state.name, (state.epoch, -math.inf))
        if seen_epoch != state.epoch:
            epoch_since = now
        self.epochs[state.name] = (state.epoch, epoch_since)
        by_proxy: dict[str, list[str]] = {}
        for (chain, proxy, node), (epoch, at, since) in self.proxies.items():
            if (chain == state.name and epoch == state.epoch and node in order and now - at <= self.proxy_report_ttl
                    and since >= epoch_since and alive(node)):
                by_proxy.setdefault(proxy, []).append(node)
        for proxy, nodes in sorted(by_proxy.items()):
            # Only against the head (see the module docstring).
            if len(nodes) == 1 and nodes[0] == order[0] and order.index(nodes[0]) > blocked_to:
                claims.append(_Claim(PROXY + proxy, nodes[0], f"{nodes[0]} unusable from proxy {proxy}"))
        return claims
