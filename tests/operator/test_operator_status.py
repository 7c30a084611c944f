"""The pure status function: phases, conditions and their transition times."""

from __future__ import annotations

from keychain.operator.naming import Names
from keychain.operator.status import Observation, build_status, invalid_spec_status
from keychain.operator.stepping import Activity, ChainView, Member, NodeSetState, Step

NAMES = Names("mychain", "ns1")
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def members(*healthy: bool) -> ChainView:
    roles = ["head", *["middle"] * (len(healthy) - 2), "tail"] if len(healthy) > 1 else ["head"][: len(healthy)]
    return ChainView("mychain", 4, tuple(
        Member(f"mychain-node-{i}", "", "active", role, ok) for i, (role, ok) in enumerate(zip(roles, healthy, strict=True))
    ))  # fmt: skip


def seen(chain: ChainView | None, *, replicas: int = 3, step: Step | None = None, proxies: int = 2) -> Observation:
    node_set = NodeSetState(replicas, 0, replicas, replicas, True, True, True)
    return Observation(
        desired_replicas=3, generation=2, node_set=node_set, chain=chain, leader="mychain-coord-1",
        coordinator_error=None if chain else "no coordinator answered", proxies_available=proxies,
        step=step or Step(replicas, 0, Activity.STEADY),
    )  # fmt: skip


def conditions(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_whole_chain_is_running_available_and_not_degraded():
    status = build_status(NAMES, seen(members(True, True, True)), {}, T0)
    assert status["phase"] == "Running"
    assert (status["head"], status["tail"], status["epoch"], status["readyReplicas"]) == (
        "mychain-node-0", "mychain-node-2", 4, 3,
    )  # fmt: skip
    assert conditions(status) == {
        "Available": ("True", "ChainServing"),
        "Progressing": ("False", "Reconciled"),
        "Degraded": ("False", "AllNodesServing"),
        "StorageFull": ("False", "SpaceAvailable"),
    }
    assert all(c["observedGeneration"] == 2 and c["lastTransitionTime"] == T0 for c in status["conditions"])


def test_a_new_chain_is_creating_until_it_first_runs_whole_then_shortfalls_are_degraded():
    creating = build_status(NAMES, seen(ChainView("mychain", 1, ())), {}, T0)
    assert creating["phase"] == "Creating"
    assert conditions(creating)["Progressing"] == ("True", "Creating")
    still = build_status(NAMES, seen(members(True, True)), creating, T1)
    assert still["phase"] == "Creating"
    running = build_status(NAMES, seen(members(True, True, True)), still, T1)
    degraded = build_status(NAMES, seen(members(True, False, True)), running, T1)
    assert degraded["phase"] == "Degraded" and degraded["readyReplicas"] == 2
    assert conditions(degraded)["Degraded"] == ("True", "NodesNotServing")


def test_a_transition_time_moves_only_when_the_condition_changes():
    first = build_status(NAMES, seen(members(True, True, True)), {}, T0)
    same = build_status(NAMES, seen(members(True, True, True)), first, T1)
    assert same == first
    changed = build_status(NAMES, seen(members(True, False, True)), first, T1)
    times = {c["type"]: c["lastTransitionTime"] for c in changed["conditions"]}
    assert times == {"Available": T0, "Progressing": T0, "Degraded": T1, "StorageFull": T0}


def test_a_member_with_a_full_disk_sets_storage_full_naming_it_until_its_alarm_clears():
    running = build_status(NAMES, seen(members(True, True, True)), {}, T0)
    chain = members(True, True, True)
    full_view = ChainView(chain.name, chain.epoch, tuple(
        Member(m.id, m.address, m.state, m.role, m.healthy, storage_full=(m.id == "mychain-node-1")) for m in chain.members
    ))  # fmt: skip
    full = build_status(NAMES, seen(full_view), running, T1)
    storage = next(c for c in full["conditions"] if c["type"] == "StorageFull")
    assert (storage["status"], storage["reason"], storage["lastTransitionTime"]) == ("True", "NoSpace", T1)
    assert "mychain-node-1" in storage["message"] and "mychain-node-0" not in storage["message"]
    assert conditions(full)["Available"] == ("True", "ChainServing")  # reads are still served
    silent = build_status(NAMES, seen(None), full, T1)
    assert conditions(silent)["StorageFull"] == ("True", "NoSpace")  # the last word is kept
    cleared = build_status(NAMES, seen(members(True, True, True)), full, T0)
    assert conditions(cleared)["StorageFull"] == ("False", "SpaceAvailable")


def test_a_silent_coordinator_keeps_the_last_known_members_and_says_why():
    running = build_status(NAMES, seen(members(True, True, True)), {}, T0)
    silent = build_status(NAMES, seen(None), running, T1)
    assert silent["members"] == running["members"] and silent["epoch"] == 4
    assert conditions(silent)["Available"] == ("False", "CoordinatorUnreachable")
    assert conditions(silent)["Degraded"] == ("True", "CoordinatorUnreachable")


def test_a_pending_step_is_progressing_with_its_reason_and_phase():
    step = Step(4, 0, Activity.SCALING_OUT, waiting_for="mychain-node-3 to serve in the chain")
    status = build_status(NAMES, seen(members(True, True, True), replicas=4, step=step), {"phase": "Running"}, T0)
    assert status["phase"] == "Scaling"
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "ScalingOut")
    assert progressing["message"] == "mychain-node-3 to serve in the chain"
    rolling = build_status(NAMES, seen(members(True, True, True), step=Step(3, 1, Activity.ROLLING)), {}, T0)
    assert rolling["phase"] == "Upgrading"


def test_no_available_proxy_means_not_available():
    status = build_status(NAMES, seen(members(True, True, True), proxies=0), {}, T0)
    assert conditions(status)["Available"] == ("False", "NoProxyAvailable")


def test_an_invalid_spec_is_degraded_and_not_progressing_and_keeps_the_rest():
    running = build_status(NAMES, seen(members(True, True, True)), {}, T0)
    status = invalid_spec_status(running, "invalid spec: spec.storage.size: not a positive quantity", 3, T1)
    assert conditions(status) == {
        "Available": ("True", "ChainServing"),
        "Progressing": ("False", "InvalidSpec"),
        "Degraded": ("True", "InvalidSpec"),
    }
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "spec.storage.size" in degraded["message"] and degraded["lastTransitionTime"] == T1
    assert degraded["observedGeneration"] == 3
    available = next(c for c in status["conditions"] if c["type"] == "Available")
    assert available["lastTransitionTime"] == T0, "the chain still serves: Available did not change"
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        k: v for k, v in running.items() if k != "conditions"
    }
