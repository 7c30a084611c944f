"""The operator against the kmock Kubernetes emulator and a fake coordinator.

kmock runs no controllers: the tests say which node pods are ready, the StatefulSet's status is
what the pod runner's StatefulSet controller computes for them, the fake coordinator plays the
chain nodes (registering, being promoted), and the tests watch what the operator does. With real
pods and the real coordinator the same journeys run end to end in tests/kube.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kmock
import pytest
from conftest import (
    CHAIN,
    CHAINS,
    DEPLOYMENTS,
    NAMESPACE,
    STATEFULSETS,
    UID,
    chain_body,
    events,
    eventually,
    live,
    running_operator,
    statefulset_pods_ready,
    writes,
)
from fake_coordinator import FakeCoordinator
from keychain.operator.reconcile import Reconciler

NODES = "mychain-node"
HOLD = 1.0  # seconds (five timer ticks) during which the operator must not take a step


def node_ids(count: int) -> list[str]:
    return [f"{NODES}-{i}" for i in range(count)]


def node_replicas(emulator: kmock.KubernetesEmulator) -> int | None:
    sts = live(emulator, STATEFULSETS, NODES)
    return sts["spec"]["replicas"] if sts else None


def replicas_history(emulator: kmock.KubernetesEmulator) -> list[int]:
    """Every distinct spec.replicas the node StatefulSet went through, in order."""
    history = emulator.objects[kmock.resource(STATEFULSETS), NAMESPACE, NODES].history
    values = [version["spec"]["replicas"] for version in history if version is not None]
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def chain_status(emulator: kmock.KubernetesEmulator) -> dict[str, Any]:
    return (live(emulator, CHAINS, CHAIN) or {}).get("status", {})


def condition(emulator: kmock.KubernetesEmulator, kind: str) -> dict[str, Any]:
    return next((c for c in chain_status(emulator).get("conditions", []) if c["type"] == kind), {})


async def set_replicas(emulator: kmock.KubernetesEmulator, replicas: int) -> None:
    """What `kubectl scale chain` does: patch spec.replicas (the emulator tells the operator)."""
    path = f"/apis/keychain.dev/v1alpha1/namespaces/{NAMESPACE}/chains/{CHAIN}"
    response = await emulator.patch(path, json={"spec": {"replicas": replicas}})
    assert response.status == 200


def all_ready(emulator: kmock.KubernetesEmulator, count: int) -> None:
    statefulset_pods_ready(emulator, NODES, count)


async def test_a_new_chain_gets_every_object_owned_by_the_chain(emulator, reconciler):
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 3, "proxy": {"ingress": {"enabled": True}}})
    expected = {
        ("v1/configmaps", "mychain-config"),
        ("v1/services", "mychain-coord"),
        ("v1/services", NODES),
        ("v1/services", "mychain-proxy"),
        (STATEFULSETS, "mychain-coord"),
        (STATEFULSETS, NODES),
        (DEPLOYMENTS, "mychain-proxy"),
        ("networking.k8s.io/v1/ingresses", CHAIN),
        ("policy/v1/poddisruptionbudgets", "mychain-coord"),
        ("policy/v1/poddisruptionbudgets", NODES),
        ("policy/v1/poddisruptionbudgets", "mychain-proxy"),
    }
    async with running_operator(emulator, reconciler):
        await eventually(lambda: all(live(emulator, resource, name) for resource, name in expected))
        await eventually(lambda: chain_status(emulator).get("phase"))

    for resource, name in expected:
        owners = live(emulator, resource, name)["metadata"]["ownerReferences"]
        assert owners == [
            {"apiVersion": "keychain.dev/v1alpha1", "kind": "Chain", "name": CHAIN, "uid": UID,
             "controller": True, "blockOwnerDeletion": True}
        ], (resource, name)  # fmt: skip
    assert node_replicas(emulator) == 3
    assert chain_status(emulator)["selector"] == (
        "app.kubernetes.io/name=keychain,app.kubernetes.io/instance=mychain,app.kubernetes.io/component=node"
    )
    assert "keychain.dev/operator" in live(emulator, CHAINS, CHAIN)["metadata"]["finalizers"]


async def test_reconciling_an_unchanged_chain_again_writes_nothing(emulator, reconciler: Reconciler, coordinator):
    for member in node_ids(3):
        coordinator.join(member, active=True)
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 3})

    first = await asyncio.to_thread(reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    written = writes(emulator)
    assert len(written) == 19  # five certificate Secrets, ten objects, three NetworkPolicies and the status
    assert len(set(written)) == len(written), "every object is written once, never retried after a 409"

    second = await asyncio.to_thread(reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    assert writes(emulator) == written, "the second reconcile must not create, patch or delete anything"
    assert second.status == first.status


async def test_a_gray_failure_and_each_readmission_hold_are_one_warning_each_and_the_holds_show(
    emulator, reconciler, coordinator: FakeCoordinator
):
    for member in node_ids(3):
        coordinator.join(member, active=True)
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 3})

    def warnings(reason: str) -> list[str]:
        return [message for kind, why, message in events(emulator) if kind == "Warning" and why == reason]

    async with running_operator(emulator, reconciler):
        await eventually(lambda: node_replicas(emulator) == 3)
        all_ready(emulator, 3)
        await eventually(lambda: chain_status(emulator).get("members"))

        coordinator.suspect("mychain-node-1", "mychain-node-0 cannot reach it")
        await eventually(lambda: warnings("MemberSuspected"))
        assert chain_status(emulator)["members"][1]["suspected"] == "mychain-node-0 cannot reach it"

        coordinator.remove_for_links("mychain-node-1", removals=1, hold_ms=1500)
        await eventually(lambda: warnings("ReadmissionHeld"))
        (held,) = chain_status(emulator)["held"]
        assert (held["node"], held["removals"], held["reason"]) == ("mychain-node-1", 1, "its successor does not ack")
        await asyncio.sleep(HOLD)  # five timer ticks see the same hold

        coordinator.join("mychain-node-1")  # it rejoined, failed its links again, and is held longer
        coordinator.remove_for_links("mychain-node-1", removals=2, hold_ms=3000)
        await eventually(lambda: len(warnings("ReadmissionHeld")) == 2)
        await eventually(lambda: chain_status(emulator)["held"][0]["removals"] == 2)
        await asyncio.sleep(HOLD)

    assert warnings("MemberSuspected") == [
        "removing mychain-node-1 from the chain for a gray failure: mychain-node-0 cannot reach it"
    ]
    assert warnings("ReadmissionHeld") == [
        "mychain-node-1 may not rejoin the chain for 2 s after 1 removal for link failures (its successor does not ack)",
        "mychain-node-1 may not rejoin the chain for 3 s after 2 removals for link failures (its successor does not ack)",
    ]


async def test_a_live_object_that_drifted_from_the_spec_is_patched_back(emulator, reconciler: Reconciler):
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 3})
    await asyncio.to_thread(reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    emulator.objects[kmock.resource("v1/configmaps"), NAMESPACE, "mychain-config"]["data"] = {"KEYCHAIN_CHAIN": "x"}
    before = len(writes(emulator))

    await asyncio.to_thread(reconciler.reconcile, live(emulator, CHAINS, CHAIN))

    assert live(emulator, "v1/configmaps", "mychain-config")["data"]["KEYCHAIN_CHAIN"] == CHAIN
    assert writes(emulator)[before:] == [f"PATCH /api/v1/namespaces/{NAMESPACE}/configmaps/mychain-config"]


@pytest.mark.parametrize(
    "resource, name, field, drifted",
    [
        ("v1/services", "mychain-proxy", "spec", {"type": "NodePort"}),
        ("policy/v1/poddisruptionbudgets", NODES, "spec", {"maxUnavailable": 2}),
        ("networking.k8s.io/v1/ingresses", CHAIN, "spec", {"ingressClassName": "other"}),
    ],
)
async def test_a_drifted_service_budget_or_ingress_is_patched_back(
    emulator, reconciler: Reconciler, resource, name, field, drifted
):
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body(
        {"replicas": 3, "proxy": {"ingress": {"enabled": True, "className": "nginx"}}}
    )
    await asyncio.to_thread(reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    rendered = live(emulator, resource, name)[field]
    emulator.objects[kmock.resource(resource), NAMESPACE, name][field] = {**rendered, **drifted}
    before = len(writes(emulator))

    await asyncio.to_thread(reconciler.reconcile, live(emulator, CHAINS, CHAIN))

    assert live(emulator, resource, name)[field] == rendered
    assert [w.split("/")[-1] for w in writes(emulator)[before:] if w.startswith("PATCH")] == [name]


async def test_raising_replicas_grows_one_node_at_a_time_behind_the_health_gate(
    emulator, reconciler, coordinator: FakeCoordinator
):
    for member in node_ids(3):
        coordinator.join(member, active=True)
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 3})
    async with running_operator(emulator, reconciler):
        await eventually(lambda: node_replicas(emulator) == 3)
        all_ready(emulator, 3)
        await eventually(lambda: chain_status(emulator).get("phase") == "Running")

        await set_replicas(emulator, 5)
        await eventually(lambda: node_replicas(emulator) == 4)
        # The new pod is ready, but its node is still syncing: no second step.
        all_ready(emulator, 4)
        coordinator.join("mychain-node-3")
        await eventually(lambda: "mychain-node-3 to serve" in condition(emulator, "Progressing").get("message", ""))
        assert condition(emulator, "Progressing")["reason"] == "ScalingOut"
        await asyncio.sleep(HOLD)
        assert node_replicas(emulator) == 4

        # Promoted to an active, healthy member: the next node may come.
        coordinator.promote("mychain-node-3")
        await eventually(lambda: node_replicas(emulator) == 5)
        all_ready(emulator, 5)
        coordinator.join("mychain-node-4")
        await asyncio.sleep(HOLD)
        assert node_replicas(emulator) == 5
        coordinator.promote("mychain-node-4")
        await eventually(lambda: chain_status(emulator).get("phase") == "Running")

    assert replicas_history(emulator) == [3, 4, 5]
    assert coordinator.removals == []


async def test_lowering_replicas_unlinks_the_node_before_the_statefulset_shrinks(
    emulator, reconciler, coordinator: FakeCoordinator
):
    for member in node_ids(5):
        coordinator.join(member, active=True)
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 5})
    async with running_operator(emulator, reconciler):
        await eventually(lambda: node_replicas(emulator) == 5)
        all_ready(emulator, 5)
        await eventually(lambda: chain_status(emulator).get("phase") == "Running")

        # While the coordinator cannot remove the node (an election), the pod stays.
        coordinator.refuse_removals = True
        await set_replicas(emulator, 4)
        await eventually(lambda: condition(emulator, "Progressing").get("reason") == "ScalingIn")
        assert "mychain-node-4 to leave the chain" in condition(emulator, "Progressing")["message"]
        await asyncio.sleep(HOLD)
        assert node_replicas(emulator) == 5
        assert "mychain-node-4" in coordinator.ids()

        coordinator.refuse_removals = False
        await eventually(lambda: node_replicas(emulator) == 4)
        assert coordinator.removals == ["mychain-node-4"]
        all_ready(emulator, 4)
        await eventually(lambda: chain_status(emulator).get("phase") == "Running")

    assert replicas_history(emulator) == [5, 4]
    assert coordinator.ids() == node_ids(4)


async def test_status_carries_the_members_and_the_conditions(emulator, reconciler, coordinator: FakeCoordinator):
    for member in node_ids(3):
        coordinator.join(member, active=True)
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 3})
    async with running_operator(emulator, reconciler):
        await eventually(lambda: node_replicas(emulator) == 3)
        all_ready(emulator, 3)
        await eventually(lambda: live(emulator, DEPLOYMENTS, "mychain-proxy"))
        emulator.objects[kmock.resource(DEPLOYMENTS), NAMESPACE, "mychain-proxy"]["status"] = {"availableReplicas": 2}
        await eventually(lambda: condition(emulator, "Available").get("status") == "True")

        status = chain_status(emulator)
        assert status["phase"] == "Running"
        assert status["members"] == [
            {"name": "mychain-node-0", "role": "head", "healthy": True},
            {"name": "mychain-node-1", "role": "middle", "healthy": True},
            {"name": "mychain-node-2", "role": "tail", "healthy": True},
        ]
        assert (status["head"], status["tail"], status["readyReplicas"]) == ("mychain-node-0", "mychain-node-2", 3)
        assert status["epoch"] == coordinator.epoch
        assert status["coordinatorLeader"] == "mychain-coord-0"
        assert status["observedGeneration"] == 1
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Available": "True", "Progressing": "False", "Degraded": "False", "StorageFull": "False",
        }  # fmt: skip

        coordinator.set_healthy("mychain-node-1", False)
        await eventually(lambda: condition(emulator, "Degraded").get("status") == "True")
        assert condition(emulator, "Degraded")["reason"] == "NodesNotServing"
        assert chain_status(emulator)["readyReplicas"] == 2
        assert chain_status(emulator)["phase"] == "Degraded"
