"""What a Chain shows of gray failures: members being removed for them, and nodes held back from rejoining.

Pure: the coordinator's view of the chain and the Chain's previous `status` in, the `held` status
field and the Warning Events out. The coordinator removes a member whose links fail (`suspected`
says why) and then holds back its registration, longer after each removal (re-admission backoff);
the operator only reports both.

Each distinct fact is reported once, not on every timer tick. The memory of what was reported
is the Chain's own `status`: a member is marked `suspected` in `status.members`, and every hold
is listed in `status.held` with its node and removal count, so a fact is new exactly when the
previous status does not show it yet. This needs no state of its own (a kopf memo would be lost
when the operator restarts, and report every running hold again), and it cannot drift from what
the user sees. A reconcile reads the stored Chain under its per-Chain lock and writes the status
before its Events are posted, so two reconciles never report the same fact; if the status write
fails, nothing is posted and the next reconcile reports it. Kubernetes Events are best effort:
one lost while posting is not repeated.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from keychain.operator.events import WARNING, Event
from keychain.operator.stepping import ChainView, ReadmissionHold

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def held_status(held: Sequence[ReadmissionHold], previous: Any, now: str) -> list[dict[str, Any]]:
    """`status.held`: the nodes held back from rejoining, each with the time its hold ends.

    The end is computed from the coordinator's remaining time when a hold is first seen and kept
    while the same hold (node and removal count) lasts, so an unchanged hold leaves the status
    unchanged and a steady Chain gets no status write every tick."""
    known = {(h.get("node"), h.get("removals")): h for h in previous or () if isinstance(h, Mapping)}
    start = datetime.datetime.strptime(now, _TIME_FORMAT).replace(tzinfo=datetime.UTC)
    entries = []
    for hold in held:
        old = known.get((hold.node, hold.removals))
        if old is not None and old.get("until"):
            until = str(old["until"])
        else:
            # Rounded up to the second, so the hold never looks over before the coordinator lifts it.
            until = (start + datetime.timedelta(seconds=-(-hold.remaining_ms // 1000))).strftime(_TIME_FORMAT)
        entries.append({"node": hold.node, "removals": hold.removals, "reason": hold.reason, "until": until})
    return entries


def gray_failure_events(previous: Mapping[str, Any], chain: ChainView) -> list[Event]:
    """The Warning Events for what `chain` shows and the `previous` status did not: a member newly
    suspected of a gray failure, and a node newly held back after a removal for link failures.
    A hold after a drain on request (no link failure: the operator's own scale-in) is no warning."""
    suspected_before = {
        m.get("name") for m in previous.get("members") or () if isinstance(m, Mapping) and m.get("suspected")
    }
    held_before = {
        (h.get("node"), h.get("removals")) for h in previous.get("held") or () if isinstance(h, Mapping)
    }
    events = [
        Event(WARNING, "MemberSuspected", f"removing {m.id} from the chain for a gray failure: {m.suspected}")
        for m in chain.members
        if m.suspected and m.id not in suspected_before
    ]
    for hold in chain.held:
        if hold.removals > 0 and (hold.node, hold.removals) not in held_before:
            seconds = -(-hold.remaining_ms // 1000)
            times = "removal" if hold.removals == 1 else "removals"
            events.append(Event(WARNING, "ReadmissionHeld",
                                f"{hold.node} may not rejoin the chain for {seconds} s after {hold.removals} "
                                f"{times} for link failures ({hold.reason})"))  # fmt: skip
    return events
