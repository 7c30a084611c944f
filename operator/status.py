"""A Chain's `status`, computed from observations: a pure function.

The coordinator's view of the chain gives the members (and which it is removing for a gray
failure), the nodes it holds back from rejoining, the epoch and leader; the node
StatefulSet and the proxy Deployment give the replica counts; the planned step tells
whether the operator is still at work. When the coordinator does not answer, the last
known members are kept and the Degraded condition says why. A member whose disk is full (its storage
alarm: the chain refuses writes, serves reads) sets the StorageFull condition, naming the members,
until the alarm clears. Conditions follow the
`metav1.Condition` shape; a condition's `lastTransitionTime` moves only when its status does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keychain.operator.gray_failures import held_status
from keychain.operator.naming import NODE, Names, selector_string
from keychain.operator.stepping import Activity, ChainView, CoordinatorStep, NodeSetState, Step

PHASE_CREATING = "Creating"
PHASE_SCALING = "Scaling"
PHASE_UPGRADING = "Upgrading"
PHASE_RUNNING = "Running"
PHASE_DEGRADED = "Degraded"


@dataclass(frozen=True)
class Observation:
    """Everything the status is computed from, gathered by one reconcile or status refresh."""

    desired_replicas: int
    generation: int | None
    node_set: NodeSetState | None
    chain: ChainView | None
    leader: str | None
    coordinator_error: str | None
    proxies_available: int
    step: Step
    coordinator_step: CoordinatorStep | None = None


def build_status(names: Names, seen: Observation, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The Chain's new `status` (the fields the operator owns)."""
    previous = previous or {}
    status: dict[str, Any] = {
        "replicas": seen.node_set.replicas if seen.node_set else 0,
        "selector": selector_string(names.chain, NODE),
    }
    if seen.generation is not None:
        status["observedGeneration"] = seen.generation
    if seen.chain is not None:
        in_range = [m for m in seen.chain.members if names.node_ordinal(m.id) is not None]
        status["readyReplicas"] = sum(1 for m in in_range if m.in_service)
        status["epoch"] = seen.chain.epoch
        status["members"] = [{"name": m.id, "role": m.role, "healthy": m.healthy,
                              **({"suspected": m.suspected} if m.suspected else {})}
                             for m in seen.chain.members]  # fmt: skip
        # Always present (empty when none), as a merge patch of the status never deletes a field.
        status["held"] = held_status(seen.chain.held, previous.get("held"), now)
        status["head"] = next((m.id for m in seen.chain.members if m.role == "head"), "")
        status["tail"] = next((m.id for m in seen.chain.members if m.role == "tail"), "")
        status["coordinatorLeader"] = seen.leader or ""
    else:
        for key in ("readyReplicas", "epoch", "members", "held", "head", "tail", "coordinatorLeader"):
            if key in previous:
                status[key] = previous[key]
    ready = int(status.get("readyReplicas", 0))

    step = seen.step
    resizing_coordinator = seen.coordinator_step is not None and not seen.coordinator_step.converged
    if step.activity is Activity.ROLLING:
        phase = PHASE_UPGRADING
    elif step.activity in (Activity.SCALING_OUT, Activity.SCALING_IN) or resizing_coordinator:
        phase = PHASE_SCALING
    elif ready >= seen.desired_replicas and seen.chain is not None:
        phase = PHASE_RUNNING
    elif (
        step.activity is Activity.CREATING
        or previous.get("phase") == PHASE_CREATING
        or ("phase" not in previous and ready == 0)
    ):
        # A new chain is Creating until it first runs whole; then shortfalls are Degraded.
        phase = PHASE_CREATING
    else:
        phase = PHASE_DEGRADED
    status["phase"] = phase

    if seen.chain is None:
        available = (False, "CoordinatorUnreachable", seen.coordinator_error or "the coordinator did not answer")
    elif ready == 0:
        available = (False, "NoNodeServing", "no chain node is an active, healthy member")
    elif seen.proxies_available == 0:
        available = (False, "NoProxyAvailable", "no proxy pod is available")
    else:
        available = (True, "ChainServing", f"{ready} of {seen.desired_replicas} nodes serving")

    if not step.converged:
        progressing = (True, step.activity.value, step.waiting_for or "applying the next step")
    elif resizing_coordinator:
        assert seen.coordinator_step is not None
        progressing = (True, seen.coordinator_step.activity.value,
                       seen.coordinator_step.waiting_for or "applying the next step")  # fmt: skip
    elif phase == PHASE_CREATING:
        progressing = (True, PHASE_CREATING, "waiting for the chain to form")
    else:
        progressing = (False, "Reconciled", "the cluster matches the spec")

    if phase == PHASE_CREATING:
        degraded = (False, "Creating", "the chain is still forming")
    elif seen.chain is None:
        degraded = (True, "CoordinatorUnreachable", seen.coordinator_error or "the coordinator did not answer")
    elif ready < min(seen.desired_replicas, status["replicas"]):
        degraded = (True, "NodesNotServing", f"{ready} of {status['replicas']} nodes serving")
    else:
        degraded = (False, "AllNodesServing", f"{ready} nodes serving")

    storage_full = _storage_full(seen, previous)

    old = {c.get("type"): c for c in previous.get("conditions", []) if isinstance(c, Mapping)}
    status["conditions"] = [
        _condition(kind, value, old.get(kind), seen.generation, now)
        for kind, value in (("Available", available), ("Progressing", progressing), ("Degraded", degraded),
                            ("StorageFull", storage_full))
    ]
    return status


def _storage_full(seen: Observation, previous: Mapping[str, Any]) -> tuple[bool, str, str]:
    """StorageFull: True while a member's disk is over its high-water mark (kept as it was when the
    coordinator does not answer)."""
    if seen.chain is None:
        old = next((c for c in previous.get("conditions", []) if isinstance(c, Mapping) and c.get("type") == "StorageFull"), None)
        if old is not None:
            return (old.get("status") == "True", str(old.get("reason", "")), str(old.get("message", "")))
        return (False, "Unknown", seen.coordinator_error or "the coordinator did not answer")
    full = [m.id for m in seen.chain.members if m.storage_full]
    if full:
        return (True, "NoSpace", f"the disk of {', '.join(full)} is over its high-water mark: the chain refuses "
                                 "writes (reads and deletes are served) until space is freed or the volume grows")
    return (False, "SpaceAvailable", "every member's disk is below its high-water mark")


def invalid_spec_status(previous: Mapping[str, Any] | None, message: str, generation: int | None,
                        now: str) -> dict[str, Any]:  # fmt: skip
    """The status of a Chain whose spec the operator refuses: the last known cluster as it was,
    Degraded and not Progressing with reason InvalidSpec (nothing is changed until it is fixed)."""
    previous = dict(previous or {})
    old = {c.get("type"): c for c in previous.get("conditions", []) if isinstance(c, Mapping)}
    available = old.get("Available") or {"status": "False", "reason": "InvalidSpec", "message": message}
    values = {
        "Available": (available.get("status") == "True", available.get("reason", "InvalidSpec"),
                      available.get("message", message)),
        "Progressing": (False, "InvalidSpec", message),
        "Degraded": (True, "InvalidSpec", message),
    }  # fmt: skip
    previous["conditions"] = [_condition(kind, value, old.get(kind), generation, now) for kind, value in values.items()]
    return previous


def _condition(
    kind: str, value: tuple[bool, str, str], old: Mapping[str, Any] | None, generation: int | None, now: str
) -> dict[str, Any]:
    state, reason, message = value
    text = "True" if state else "False"
    since = old["lastTransitionTime"] if old and old.get("status") == text and old.get("lastTransitionTime") else now
    condition: dict[str, Any] = {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition
