"""Resizing the coordinator 3 -> 5 -> 3 through the operator, against the emulator and a fake coordinator:
each member is started, added through POST /v1/members and a voter before the next pod starts; going
down, each leaves the Raft cluster before its pod stops. Every step is an Event on the Chain."""

from __future__ import annotations

import asyncio
from typing import Any

import kmock
from conftest import (
    CHAIN,
    CHAINS,
    NAMESPACE,
    STATEFULSETS,
    act_as_statefulset_controller,
    chain_body,
    events,
    eventually,
    live,
    running_operator,
)
from fake_coordinator import FakeCoordinator

COORD = "mychain-coord"
HOLD = 1.0  # seconds (five timer ticks) during which the operator must not take a step
STEPS = 30.0  # seconds for several steps in a row: generous, a loaded machine runs the ticks late


def coordinator_replicas(emulator: kmock.KubernetesEmulator) -> int | None:
    sts = live(emulator, STATEFULSETS, COORD)
    return sts["spec"]["replicas"] if sts else None


def history(emulator: kmock.KubernetesEmulator, name: str, read: Any) -> list[Any]:
    """Every distinct value `read(object)` took over the object's history, in order."""
    versions = emulator.objects[kmock.resource(STATEFULSETS), NAMESPACE, name].history
    values = [read(v) for v in versions if v is not None]
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def pods_ready(emulator: kmock.KubernetesEmulator) -> None:
    """The StatefulSet controller: every coordinator pod the spec asks for runs and is ready."""
    replicas = coordinator_replicas(emulator) or 0
    act_as_statefulset_controller(emulator, COORD, replicas=replicas, readyReplicas=replicas)


async def set_coordinators(emulator: kmock.KubernetesEmulator, replicas: int) -> None:
    path = f"/apis/keychain.dev/v1alpha1/namespaces/{NAMESPACE}/chains/{CHAIN}"
    response = await emulator.patch(path, json={"spec": {"coordinator": {"replicas": replicas}}})
    assert response.status == 200


def reasons(emulator: kmock.KubernetesEmulator) -> list[str]:
    return [reason for _, reason, _ in events(emulator)]


async def grow_step(emulator: kmock.KubernetesEmulator, coordinator: FakeCoordinator, ordinal: int) -> None:
    """One growth step, watched: the pod starts, is added only once it runs, and no further pod starts
    until it is a voter."""
    member = f"{COORD}-{ordinal}"
    await eventually(lambda: coordinator_replicas(emulator) == ordinal + 1)
    await asyncio.sleep(HOLD)  # not ready yet: not added, and nothing else starts
    assert member not in coordinator.coordinator_ids()
    assert coordinator_replicas(emulator) == ordinal + 1
    pods_ready(emulator)
    await eventually(lambda: coordinator.coordinators.get(member) is True)


async def test_the_coordinator_grows_3_to_5_and_back_one_member_at_a_time(emulator, reconciler, coordinator):
    for i in range(3):
        coordinator.join(f"mychain-node-{i}", active=True)
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 3})
    async with running_operator(emulator, reconciler):
        await eventually(lambda: coordinator_replicas(emulator) == 3)
        pods_ready(emulator)
        config_before = live(emulator, "v1/configmaps", "mychain-config")["data"]

        # A new member that has not caught up stays a learner: the next pod does not start.
        coordinator.catching_up.add(f"{COORD}-3")
        await set_coordinators(emulator, 5)
        await eventually(lambda: coordinator_replicas(emulator) == 4)
        pods_ready(emulator)
        await eventually(lambda: coordinator.coordinators.get(f"{COORD}-3") is False)
        await eventually(lambda: "CoordinatorMemberAddFailed" in reasons(emulator))
        await asyncio.sleep(HOLD)
        assert coordinator_replicas(emulator) == 4
        assert (live(emulator, CHAINS, CHAIN)["status"]["phase"]) == "Scaling"
        coordinator.catching_up.clear()  # caught up: the repeated add promotes it
        await eventually(lambda: coordinator.coordinators.get(f"{COORD}-3") is True)
        await grow_step(emulator, coordinator, 4)
        await eventually(lambda: (live(emulator, CHAINS, CHAIN).get("status") or {}).get("phase") != "Scaling",
                         timeout=STEPS)  # fmt: skip

        await set_coordinators(emulator, 3)
        await eventually(lambda: coordinator_replicas(emulator) == 3, timeout=STEPS)
        await eventually(lambda: reasons(emulator).count("CoordinatorScaledIn") == 2, timeout=STEPS)

    address = "{}.mychain-coord.ns1.svc:7000"
    assert coordinator.coordinator_changes == [
        f"+{COORD}-3 " + address.format(f"{COORD}-3"),
        f"+{COORD}-4 " + address.format(f"{COORD}-4"),
        f"-{COORD}-4",
        f"-{COORD}-3",
    ]
    assert history(emulator, COORD, lambda s: s["spec"]["replicas"]) == [3, 4, 5, 4, 3]
    # A resize changes no pod template: nothing rolls.
    assert live(emulator, "v1/configmaps", "mychain-config")["data"] == config_before
    assert len(history(emulator, "mychain-node", lambda s: s["spec"]["template"])) == 1
    steps = [r for r in reasons(emulator) if r.startswith("Coordinator")]
    steps = [r for i, r in enumerate(steps) if i == 0 or steps[i - 1] != r]  # a failed add is retried each tick
    assert steps == [
        "CoordinatorScaledOut", "CoordinatorMemberAddFailed", "CoordinatorMemberAdded",
        "CoordinatorScaledOut", "CoordinatorMemberAdded",
        "CoordinatorMemberRemoved", "CoordinatorScaledIn", "CoordinatorMemberRemoved", "CoordinatorScaledIn",
    ]  # fmt: skip
    warnings = [(reason, message) for kind, reason, message in events(emulator) if kind == "Warning"]
    assert len(warnings) >= 1 and all(reason == "CoordinatorMemberAddFailed" for reason, _ in warnings), warnings
    assert f"{COORD}-3 did not catch up" in warnings[0][1]


async def test_an_invalid_spec_is_an_event_and_touches_nothing_running(emulator, reconciler, coordinator):
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 3})
    async with running_operator(emulator, reconciler):
        await eventually(lambda: coordinator_replicas(emulator) == 3)
        await eventually(lambda: "Creating" in reasons(emulator))
        await set_coordinators(emulator, 4)
        await eventually(lambda: "InvalidSpec" in reasons(emulator))
    (invalid,) = {(kind, message) for kind, reason, message in events(emulator) if reason == "InvalidSpec"}
    assert invalid[0] == "Warning" and "spec.coordinator.replicas: must be 1, 3 or 5" in invalid[1]
    assert history(emulator, COORD, lambda s: s["spec"]["replicas"]) == [3]
    assert coordinator.coordinator_changes == []
