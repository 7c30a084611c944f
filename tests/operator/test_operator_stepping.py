"""The pure stepping core: one membership or upgrade step at a time, each behind the health gate."""

from __future__ import annotations

from keychain.operator.naming import Names
from keychain.operator.stepping import (
    Activity,
    ChainView,
    Member,
    NodeSetState,
    Step,
    after_unlink,
    plan_node_set,
)

NAMES = Names("mychain", "ns1")


def node(i: int, *, state: str = "active", healthy: bool = True) -> Member:
    return Member(f"mychain-node-{i}", f"mychain-node-{i}:7100", state, "middle", healthy)


def chain(*members: Member) -> ChainView:
    return ChainView("mychain", 7, members)


def serving(count: int) -> ChainView:
    return chain(*(node(i) for i in range(count)))


def nodes(replicas: int, *, ready: int | None = None, partition: int = 0, updated: int | None = None,
          template_current: bool = True, converged: bool = True, observed: bool = True) -> NodeSetState:  # fmt: skip
    return NodeSetState(
        replicas=replicas,
        partition=partition,
        ready_replicas=replicas if ready is None else ready,
        updated_replicas=replicas if updated is None else updated,
        template_current=template_current,
        revisions_converged=converged,
        observed=observed,
    )


def test_a_new_chain_starts_all_its_nodes_at_once():
    assert plan_node_set(3, None, None, NAMES) == Step(3, 0, Activity.CREATING)


def test_a_chain_at_its_size_with_every_node_serving_is_steady():
    step = plan_node_set(3, nodes(3), serving(3), NAMES)
    assert step == Step(3, 0, Activity.STEADY)
    assert step.converged


def test_scale_out_adds_one_node_when_every_node_serves():
    assert plan_node_set(5, nodes(3), serving(3), NAMES) == Step(4, 0, Activity.SCALING_OUT)


def test_scale_out_waits_while_the_newest_node_is_still_syncing():
    syncing = chain(node(0), node(1), node(2), node(3, state="syncing"))
    step = plan_node_set(5, nodes(4), syncing, NAMES)
    assert (step.replicas, step.activity) == (4, Activity.SCALING_OUT)
    assert step.waiting_for == "mychain-node-3 to serve in the chain"
    assert not step.converged


def test_scale_out_waits_for_unhealthy_nodes_unready_pods_and_a_silent_coordinator():
    unhealthy = chain(node(0), node(1, healthy=False), node(2))
    assert plan_node_set(5, nodes(3), unhealthy, NAMES).replicas == 3
    assert plan_node_set(5, nodes(3, ready=2), serving(3), NAMES).waiting_for == "1 node pod(s) to become ready"
    assert plan_node_set(5, nodes(3), None, NAMES).waiting_for == "the coordinator to report the chain"
    assert plan_node_set(5, nodes(3, observed=False), serving(3), NAMES).replicas == 3


def test_scale_in_first_unlinks_the_highest_node_from_the_chain():
    step = plan_node_set(4, nodes(5), serving(5), NAMES)
    assert step == Step(5, 0, Activity.SCALING_IN, "mychain-node-4", "mychain-node-4 to leave the chain")


def test_scale_in_shrinks_the_statefulset_once_the_node_has_left_the_chain():
    assert plan_node_set(4, nodes(5), serving(4), NAMES) == Step(4, 0, Activity.SCALING_IN)


def test_scale_in_waits_while_a_staying_node_does_not_serve():
    degraded = chain(node(0), node(1, healthy=False), node(2), node(3), node(4))
    step = plan_node_set(4, nodes(5), degraded, NAMES)
    assert step.remove_member is None and step.replicas == 5
    assert plan_node_set(4, nodes(5), None, NAMES).remove_member is None


def test_scale_in_may_cancel_a_scale_out_whose_node_is_still_syncing():
    syncing = chain(node(0), node(1), node(2), node(3, state="syncing"))
    assert plan_node_set(3, nodes(4), syncing, NAMES).remove_member == "mychain-node-3"


def test_a_scaled_away_node_that_registered_again_is_removed_when_the_rest_serve():
    stray = chain(node(0), node(1), node(2), node(3, state="syncing"))
    step = plan_node_set(3, nodes(3), stray, NAMES)
    assert (step.replicas, step.remove_member, step.activity) == (3, "mychain-node-3", Activity.SCALING_IN)


def test_a_template_change_starts_a_roll_at_the_highest_ordinal():
    step = plan_node_set(3, nodes(3, template_current=False), serving(3), NAMES)
    assert step == Step(3, 2, Activity.ROLLING)


def test_the_roll_moves_down_one_ordinal_after_the_updated_node_is_back_in_the_chain():
    # node-2 restarted with the new template and serves again: update node-1 next.
    step = plan_node_set(3, nodes(3, partition=2, updated=1, converged=False), serving(3), NAMES)
    assert step == Step(3, 1, Activity.ROLLING)


def test_the_roll_waits_until_the_updated_node_restarted_and_serves():
    not_restarted = plan_node_set(3, nodes(3, partition=2, updated=0, converged=False), serving(3), NAMES)
    assert (not_restarted.partition, not_restarted.waiting_for) == (2, "mychain-node-2 to restart with the new template")
    rejoining = chain(node(0), node(1), node(2, state="syncing"))
    step = plan_node_set(3, nodes(3, partition=2, updated=1, converged=False), rejoining, NAMES)
    assert (step.partition, step.waiting_for) == (2, "mychain-node-2 to serve in the chain")


def test_the_roll_ends_after_the_last_node_is_updated_and_serves():
    last = plan_node_set(3, nodes(3, partition=0, updated=2, converged=False), serving(3), NAMES)
    assert (last.activity, last.waiting_for) == (Activity.ROLLING, "mychain-node-0 to restart with the new template")
    done = plan_node_set(3, nodes(3, partition=0, updated=3, converged=True), serving(3), NAMES)
    assert done == Step(3, 0, Activity.STEADY)


def test_a_roll_finishes_before_the_chain_is_resized():
    step = plan_node_set(5, nodes(3, partition=1, updated=2, converged=False), serving(3), NAMES)
    assert (step.replicas, step.partition, step.activity) == (3, 0, Activity.ROLLING)


def test_after_unlinking_the_highest_node_a_scale_in_shrinks_at_once_and_a_stray_changes_nothing():
    victim = Step(4, 0, Activity.SCALING_IN, remove_member="mychain-node-3", waiting_for="mychain-node-3 to leave")
    assert after_unlink(victim, NAMES).replicas == 3
    stray = Step(3, 0, Activity.SCALING_IN, remove_member="mychain-node-4", waiting_for="mychain-node-4 to leave")
    assert after_unlink(stray, NAMES) == stray
