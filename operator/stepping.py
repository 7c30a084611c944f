"""The membership and upgrade steps of a Chain's node set: a pure decision core.

Given what the cluster shows (the node StatefulSet) and what the coordinator reports (the
chain's members), `plan_node_set` returns the one next step: the StatefulSet's replicas and
rolling-update partition, and possibly a member to unlink from the chain first. It never
takes two steps at once; every step waits until the previous one is healthy in the chain:

- scale-out adds one ordinal once every current node is an active, healthy member;
- scale-in first removes the highest ordinal from the chain through the coordinator, and
  only when the coordinator no longer lists it shrinks the StatefulSet by one;
- a pod template change rolls one node at a time, highest ordinal first, by lowering the
  StatefulSet's partition after the previously updated node is back in the chain.

The reconciler calls it again after every step (it is idempotent), so a crash between a
step and its follow-up only repeats the same decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from keychain.operator.manifests import contains
from keychain.operator.naming import Names


class Activity(StrEnum):
    STEADY = "Steady"
    CREATING = "Creating"
    SCALING_OUT = "ScalingOut"
    SCALING_IN = "ScalingIn"
    ROLLING = "RollingUpdate"


@dataclass(frozen=True)
class Member:
    """A chain member as the coordinator reports it."""

    id: str
    address: str
    state: str  # "active" | "syncing"
    role: str  # "head" | "middle" | "tail" | "syncing"
    healthy: bool
    storage_full: bool = False  # its disk is over its high-water mark: the chain refuses writes
    suspected: str = ""  # why the coordinator is removing it for a gray failure ("": it is not)

    @property
    def in_service(self) -> bool:
        return self.state == "active" and self.healthy


@dataclass(frozen=True)
class ReadmissionHold:
    """A removed node whose registration the coordinator holds back for a while (re-admission backoff)."""

    node: str
    remaining_ms: int
    removals: int  # removals for link failures counted towards the backoff (0: drained on request)
    reason: str


@dataclass(frozen=True)
class ChainView:
    """One chain in the coordinator's status: its epoch and members, head first, and its held nodes."""

    name: str
    epoch: int
    members: tuple[Member, ...]
    held: tuple[ReadmissionHold, ...] = ()

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)


@dataclass(frozen=True)
class NodeSetState:
    """What the cluster shows of the node StatefulSet."""

    replicas: int
    partition: int
    ready_replicas: int
    updated_replicas: int
    template_current: bool  # the live pod template already is the rendered one
    revisions_converged: bool  # no rollout is under way (currentRevision == updateRevision)
    observed: bool  # the StatefulSet controller has seen the latest spec


@dataclass(frozen=True)
class Step:
    """The next step for the node set; `converged` when there is nothing left to do."""

    replicas: int
    partition: int
    activity: Activity
    remove_member: str | None = None
    waiting_for: str | None = None

    @property
    def converged(self) -> bool:
        return self.activity is Activity.STEADY and self.remove_member is None


def observe_node_set(live: Mapping[str, Any], desired: Mapping[str, Any]) -> NodeSetState:
    """Summarize a live node StatefulSet against the freshly rendered one."""
    spec = live.get("spec", {})
    status = live.get("status", {}) or {}
    replicas = int(spec.get("replicas", 1))
    partition = int(((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0))
    generation = live.get("metadata", {}).get("generation")
    observed_generation = status.get("observedGeneration")
    current, update = status.get("currentRevision"), status.get("updateRevision")
    return NodeSetState(
        replicas=replicas,
        partition=partition,
        ready_replicas=int(status.get("readyReplicas", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        template_current=contains(live.get("spec", {}).get("template", {}), desired["spec"]["template"]),
        revisions_converged=current is None or update is None or current == update,
        observed=generation is None or (observed_generation is not None and observed_generation >= generation),
    )


def plan_node_set(desired: int, live: NodeSetState | None, chain: ChainView | None, names: Names) -> Step:
    """The one next step towards `desired` nodes running the rendered template."""
    if live is None:
        # A new chain has no data to move yet: start every node at once.
        return Step(desired, 0, Activity.CREATING)
    count = live.replicas

    def unserved(n: int) -> str | None:
        """Why nodes 0..n-1 are not all serving, or None when they are."""
        if chain is None:
            return "the coordinator to report the chain"
        if not live.observed:
            return "the StatefulSet controller to observe the last change"
        if live.ready_replicas < n:
            return f"{n - live.ready_replicas} node pod(s) to become ready"
        missing = [names.node_pod(i) for i in range(n) if not _in_service(chain, names.node_pod(i))]
        return f"{', '.join(missing)} to serve in the chain" if missing else None

    # A template change rolls first, highest ordinal first, one node per step.
    if not live.template_current:
        return Step(count, max(count - 1, 0), Activity.ROLLING)
    if live.partition > 0 or not live.revisions_converged:
        partition = min(live.partition, count)
        reason = unserved(count)
        if reason is None and live.updated_replicas < count - partition:
            reason = f"{names.node_pod(partition)} to restart with the new template"
        if reason is None and partition == 0 and not live.revisions_converged:
            reason = "the rollout to complete"
        if reason is not None:
            return Step(count, partition, Activity.ROLLING, waiting_for=reason)
        if partition > 0:
            return Step(count, partition - 1, Activity.ROLLING)

    if desired > count:
        reason = unserved(count)
        if reason is not None:
            return Step(count, 0, Activity.SCALING_OUT, waiting_for=reason)
        return Step(count + 1, 0, Activity.SCALING_OUT)

    if desired < count:
        victim = names.node_pod(count - 1)
        if chain is None:
            return Step(count, 0, Activity.SCALING_IN, waiting_for="the coordinator to report the chain")
        if chain.member(victim) is None:
            return Step(count - 1, 0, Activity.SCALING_IN)
        reason = unserved(count - 1)
        if reason is not None:
            return Step(count, 0, Activity.SCALING_IN, waiting_for=reason)
        return Step(count, 0, Activity.SCALING_IN, remove_member=victim, waiting_for=f"{victim} to leave the chain")

    # A node whose pod was scaled away may have registered again while it shut down.
    members = chain.members if chain else ()
    strays = [m.id for m in members if (ordinal := names.node_ordinal(m.id)) is not None and ordinal >= count]
    if strays and unserved(count) is None:
        return Step(count, 0, Activity.SCALING_IN, remove_member=strays[0], waiting_for=f"{strays[0]} to leave")
    return Step(count, 0, Activity.STEADY)


def after_unlink(step: Step, names: Names) -> Step:
    """The step once its member has left the chain: a scale-in shrinks the StatefulSet in this same
    step. The node keeps running until its pod stops, and a running node registers again: waiting
    for the next reconcile to shrink would find it back in the chain, unlink it again, and never
    shrink."""
    if (step.activity is Activity.SCALING_IN and step.remove_member is not None
            and names.node_ordinal(step.remove_member) == step.replicas - 1):  # fmt: skip
        return replace(step, replicas=step.replicas - 1)
    return step


def _in_service(chain: ChainView, member_id: str) -> bool:
    member = chain.member(member_id)
    return member is not None and member.in_service


# --- the coordinator's Raft membership -----------------------------------------------------------


@dataclass(frozen=True)
class CoordinatorMember:
    """A coordinator (Raft) member as the coordinator reports it."""

    id: str
    voter: bool


@dataclass(frozen=True)
class CoordinatorSetState:
    """What the cluster shows of the coordinator StatefulSet."""

    replicas: int
    ready_replicas: int
    observed: bool  # the StatefulSet controller has seen the latest spec


class CoordinatorActivity(StrEnum):
    STEADY = "Steady"
    GROWING = "GrowingCoordinator"
    SHRINKING = "ShrinkingCoordinator"


@dataclass(frozen=True)
class CoordinatorStep:
    """The next step for the coordinator: the StatefulSet's replicas, and possibly a Raft member
    to add (POST /v1/members: joined as a learner, promoted once caught up) or to remove."""

    replicas: int
    activity: CoordinatorActivity
    add_member: str | None = None
    remove_member: str | None = None
    waiting_for: str | None = None

    @property
    def converged(self) -> bool:
        return self.activity is CoordinatorActivity.STEADY


def plan_coordinators(
    desired: int,
    live: CoordinatorSetState | None,
    members: tuple[CoordinatorMember, ...] | None,
    names: Names,
) -> CoordinatorStep:
    """The one next step towards `desired` coordinator members, one member at a time.

    Growing: start one more pod (it joins the running cluster), then add it through the membership
    API, which answers once it caught up and became a voter; only then start the next. Shrinking:
    remove the highest ordinal from the Raft cluster first, then stop its pod. Every step waits
    while the coordinator does not answer or a member other than the one being changed is a learner."""
    if live is None:
        return CoordinatorStep(desired, CoordinatorActivity.STEADY)  # a new Chain: every initial member at once
    count = live.replicas
    direction = (CoordinatorActivity.GROWING if desired > count
                 else CoordinatorActivity.SHRINKING if desired < count else CoordinatorActivity.STEADY)  # fmt: skip
    if members is None:
        waiting = None if direction is CoordinatorActivity.STEADY else "the coordinator to answer"
        return CoordinatorStep(count, direction, waiting_for=waiting)
    by_id = {m.id: m for m in members}
    newest = names.coordinator_pod(count - 1)
    pods_ready = live.observed and live.ready_replicas >= count

    # A member whose pod is gone (scaled away before its removal was confirmed) leaves first.
    strays = [m.id for m in members if (o := names.coordinator_ordinal(m.id)) is not None and o >= count]
    if strays:
        return CoordinatorStep(count, CoordinatorActivity.SHRINKING, remove_member=strays[0],
                               waiting_for=f"{strays[0]} to leave the coordinator")  # fmt: skip

    if desired < count:
        if newest not in by_id:
            return CoordinatorStep(count - 1, CoordinatorActivity.SHRINKING)
        learners = [m.id for m in members if not m.voter and m.id != newest]
        if learners:
            return CoordinatorStep(count, direction, waiting_for=f"{learners[0]} to become a voter")
        return CoordinatorStep(count, CoordinatorActivity.SHRINKING, remove_member=newest,
                               waiting_for=f"{newest} to leave the coordinator")  # fmt: skip

    not_voters = [names.coordinator_pod(i) for i in range(count) if not _voter(by_id, names.coordinator_pod(i))]
    if not_voters == [newest] and count > 1:
        # The pod started to grow the cluster: add it (it joins as a learner, catches up, becomes a voter).
        if not pods_ready:
            return CoordinatorStep(count, CoordinatorActivity.GROWING, waiting_for=f"{newest} to start")
        return CoordinatorStep(count, CoordinatorActivity.GROWING, add_member=newest,
                               waiting_for=f"{newest} to catch up and become a voter")  # fmt: skip
    if not_voters:
        return CoordinatorStep(count, CoordinatorActivity.GROWING if desired > count else direction,
                               waiting_for=f"{', '.join(not_voters)} to be voters")  # fmt: skip
    if desired > count:
        if not pods_ready:
            return CoordinatorStep(count, direction, waiting_for="every coordinator pod to be ready")
        return CoordinatorStep(count + 1, CoordinatorActivity.GROWING)
    return CoordinatorStep(count, CoordinatorActivity.STEADY)


def _voter(by_id: Mapping[str, CoordinatorMember], member_id: str) -> bool:
    member = by_id.get(member_id)
    return member is not None and member.voter


def observe_coordinator_set(live: Mapping[str, Any]) -> CoordinatorSetState:
    """Summarize a live coordinator StatefulSet."""
    status = live.get("status", {}) or {}
    generation = live.get("metadata", {}).get("generation")
    observed_generation = status.get("observedGeneration")
    return CoordinatorSetState(
        replicas=int(live.get("spec", {}).get("replicas", 1)),
        ready_replicas=int(status.get("readyReplicas", 0)),
        observed=generation is None or (observed_generation is not None and observed_generation >= generation),
    )
