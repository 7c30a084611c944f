"""The coordinator's resize in the pure stepping core: one Raft member at a time, each new one caught up
(a voter) before the next pod starts; going down, a member leaves the Raft cluster before its pod stops."""

from __future__ import annotations

from keychain.operator.events import coordinator_step_events
from keychain.operator.naming import Names
from keychain.operator.stepping import (
    CoordinatorActivity,
    CoordinatorMember,
    CoordinatorSetState,
    CoordinatorStep,
    plan_coordinators,
)

NAMES = Names("mychain", "ns1")
GROWING, SHRINKING, STEADY = CoordinatorActivity.GROWING, CoordinatorActivity.SHRINKING, CoordinatorActivity.STEADY


def pods(replicas: int, *, ready: int | None = None, observed: bool = True) -> CoordinatorSetState:
    return CoordinatorSetState(replicas, replicas if ready is None else ready, observed)


def voters(*ordinals: int, learners: tuple[int, ...] = ()) -> tuple[CoordinatorMember, ...]:
    return tuple(CoordinatorMember(f"mychain-coord-{i}", True) for i in ordinals) + tuple(
        CoordinatorMember(f"mychain-coord-{i}", False) for i in learners
    )


def plan(desired: int, live: CoordinatorSetState | None, members) -> CoordinatorStep:
    return plan_coordinators(desired, live, members, NAMES)


def test_a_new_chain_starts_every_initial_member_at_once():
    assert plan(5, None, None) == CoordinatorStep(5, STEADY)


def test_a_coordinator_at_its_size_with_every_member_a_voter_is_steady():
    assert plan(3, pods(3), voters(0, 1, 2)).converged


def test_growing_from_3_to_5_takes_one_member_at_a_time():
    # Step 1: a fourth pod starts (it joins the running cluster).
    assert plan(5, pods(3), voters(0, 1, 2)) == CoordinatorStep(4, GROWING)
    # It is added only once it runs, and nothing else starts meanwhile.
    step = plan(5, pods(4, ready=3), voters(0, 1, 2))
    assert (step.replicas, step.add_member, step.waiting_for) == (4, None, "mychain-coord-3 to start")
    step = plan(5, pods(4), voters(0, 1, 2))
    assert (step.replicas, step.add_member) == (4, "mychain-coord-3")
    # Added but still a learner (not caught up): the add is repeated, the fifth pod does not start.
    step = plan(5, pods(4), voters(0, 1, 2, learners=(3,)))
    assert (step.replicas, step.add_member) == (4, "mychain-coord-3")
    # A voter: the fifth pod starts, and is added the same way.
    assert plan(5, pods(4), voters(0, 1, 2, 3)) == CoordinatorStep(5, GROWING)
    assert plan(5, pods(5), voters(0, 1, 2, 3)).add_member == "mychain-coord-4"
    assert plan(5, pods(5), voters(0, 1, 2, 3, 4)).converged


def test_shrinking_from_5_to_3_removes_each_member_before_its_pod_stops():
    step = plan(3, pods(5), voters(0, 1, 2, 3, 4))
    assert (step.replicas, step.remove_member, step.activity) == (5, "mychain-coord-4", SHRINKING)
    assert plan(3, pods(5), voters(0, 1, 2, 3)) == CoordinatorStep(4, SHRINKING)
    assert plan(3, pods(4), voters(0, 1, 2, 3)).remove_member == "mychain-coord-3"
    assert plan(3, pods(4), voters(0, 1, 2)) == CoordinatorStep(3, SHRINKING)
    assert plan(3, pods(3), voters(0, 1, 2)).converged


def test_no_step_while_the_coordinator_does_not_answer():
    step = plan(5, pods(3), None)
    assert (step.replicas, step.add_member, step.remove_member) == (3, None, None)
    assert step.waiting_for == "the coordinator to answer" and not step.converged
    step = plan(3, pods(5), None)
    assert (step.replicas, step.remove_member) == (5, None)


def test_growth_waits_for_every_pod_to_be_ready_and_observed():
    assert plan(5, pods(3, ready=2), voters(0, 1, 2)).replicas == 3
    assert plan(5, pods(3, observed=False), voters(0, 1, 2)).replicas == 3


def test_a_shrink_waits_while_a_staying_member_is_a_learner():
    step = plan(3, pods(5), voters(0, 1, 2, 4, learners=(3,)))
    assert (step.replicas, step.remove_member) == (5, None)
    assert step.waiting_for == "mychain-coord-3 to become a voter"


def test_a_member_whose_pod_is_gone_is_removed_first():
    step = plan(3, pods(3), voters(0, 1, 2, 3))
    assert step.remove_member == "mychain-coord-3"


def test_a_growth_cancelled_before_its_pod_was_added_just_stops_the_pod():
    assert plan(3, pods(4), voters(0, 1, 2)) == CoordinatorStep(3, SHRINKING)


def test_each_step_taken_is_one_event_and_a_wait_is_none():
    live = pods(3)
    assert [e.reason for e in coordinator_step_events(live, plan(5, live, voters(0, 1, 2)), NAMES)] == [
        "CoordinatorScaledOut"
    ]
    live = pods(4)
    assert [e.reason for e in coordinator_step_events(live, plan(5, live, voters(0, 1, 2)), NAMES)] == [
        "CoordinatorMemberAdded"
    ]
    live = pods(4, ready=3)
    assert coordinator_step_events(live, plan(5, live, voters(0, 1, 2)), NAMES) == []
