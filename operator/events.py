"""The Kubernetes Events a reconcile records on its Chain: one per membership step taken, and failures.

Pure: the steps the stepping core chose (and the state they were chosen from) in, Events out. A step
that only waits records nothing, so a Chain that waits for a node to sync does not repeat itself
every timer tick; the handlers post the Events (kubectl describe chain shows them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from keychain.operator.naming import Names
from keychain.operator.stepping import Activity, CoordinatorSetState, CoordinatorStep, NodeSetState, Step

NORMAL = "Normal"
WARNING = "Warning"


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str  # UpperCamelCase, as Kubernetes reasons are
    message: str


def node_step_events(live: NodeSetState | None, step: Step, names: Names) -> list[Event]:
    """What the node set's step did: pods started or stopped, a member unlinked, a roll moved on."""
    if live is None:
        return [Event(NORMAL, "Creating", f"starting {step.replicas} chain node(s)")]
    events = []
    if step.remove_member:
        events.append(Event(NORMAL, "MemberRemoved", f"unlinked {step.remove_member} from the chain"))
    events += _resized(live.replicas, step.replicas, names.node_pod, "", "nodes",
                       "it joins the chain and becomes its tail once synced", "the chain")  # fmt: skip
    if step.activity is Activity.ROLLING and step.waiting_for is None and step.partition != live.partition:
        events.append(Event(NORMAL, "RollingUpdate", f"updating {names.node_pod(step.partition)} "
                                                     f"(partition {live.partition} -> {step.partition})"))  # fmt: skip
    return events


def coordinator_step_events(live: CoordinatorSetState | None, step: CoordinatorStep, names: Names) -> list[Event]:
    """What the coordinator's step did: a pod started or stopped, a Raft member added or removed."""
    if live is None:
        return []
    events = []
    if step.add_member:
        events.append(Event(NORMAL, "CoordinatorMemberAdded", f"{step.add_member} caught up and is a voter"))
    if step.remove_member:
        events.append(Event(NORMAL, "CoordinatorMemberRemoved", f"removed {step.remove_member} from the coordinator"))
    events += _resized(live.replicas, step.replicas, names.coordinator_pod, "Coordinator", "members",
                       "it is added once it runs", "the coordinator")  # fmt: skip
    return events


def _resized(before: int, after: int, pod: Callable[[int], str], prefix: str, unit: str, joining: str,
             left: str) -> list[Event]:  # fmt: skip
    """A ScaledOut or ScaledIn Event when a StatefulSet's replicas changed (by one: one step at a time)."""
    if after > before:
        return [Event(NORMAL, f"{prefix}ScaledOut", f"started {pod(after - 1)} ({before} -> {after} {unit}); {joining}")]
    if after < before:
        return [Event(NORMAL, f"{prefix}ScaledIn", f"stopped {pod(before - 1)}, which had left {left} "
                                                   f"({before} -> {after} {unit})")]  # fmt: skip
    return []


def failure(reason: str, message: str) -> Event:
    return Event(WARNING, reason, message)
