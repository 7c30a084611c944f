"""The reconcile against the emulator, step by step (no kopf): rolls, pruning, volume growth."""

from __future__ import annotations

import asyncio
from typing import Any

import kmock
import pytest
from conftest import CHAINS, NAMESPACE, STATEFULSETS, act_as_statefulset_controller, chain_body, live, writes
from keychain.operator.reconcile import OwnershipConflict, Reconciler
from keychain.operator.spec import ChainSpecError

NODES = "mychain-node"


async def reconcile(emulator: kmock.KubernetesEmulator, reconciler: Reconciler) -> Any:
    return await asyncio.to_thread(reconciler.reconcile, live(emulator, CHAINS, "mychain"))


def patch_chain(emulator: kmock.KubernetesEmulator, spec: dict[str, Any]) -> None:
    emulator.objects[kmock.resource(CHAINS), NAMESPACE, "mychain"].patch({"spec": spec})


def node_set(emulator: kmock.KubernetesEmulator) -> tuple[str, int, int]:
    sts = live(emulator, STATEFULSETS, NODES)
    image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
    return image, sts["spec"]["replicas"], sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"]


async def test_an_image_change_rolls_one_node_at_a_time_from_the_highest_ordinal(emulator, reconciler, coordinator):
    for i in range(3):
        coordinator.join(f"mychain-node-{i}", active=True)
    emulator.objects[CHAINS, NAMESPACE, "mychain"] = chain_body({"replicas": 3, "image": "keychain:1"})
    await reconcile(emulator, reconciler)
    act_as_statefulset_controller(emulator, NODES, readyReplicas=3, updatedReplicas=3,
                                  currentRevision="r1", updateRevision="r1")  # fmt: skip

    patch_chain(emulator, {"image": "keychain:2"})
    outcome = await reconcile(emulator, reconciler)
    assert node_set(emulator) == ("keychain:2", 3, 2)
    assert outcome.status["phase"] == "Upgrading"

    # node-2 has not restarted yet: the partition stays.
    act_as_statefulset_controller(emulator, NODES, readyReplicas=3, updatedReplicas=0,
                                  currentRevision="r1", updateRevision="r2")  # fmt: skip
    await reconcile(emulator, reconciler)
    assert node_set(emulator)[2] == 2

    # node-2 restarted but is still catching up in the chain: the partition stays.
    act_as_statefulset_controller(emulator, NODES, readyReplicas=3, updatedReplicas=1,
                                  currentRevision="r1", updateRevision="r2")  # fmt: skip
    coordinator.set_healthy("mychain-node-2", False)
    await reconcile(emulator, reconciler)
    assert node_set(emulator)[2] == 2

    coordinator.set_healthy("mychain-node-2", True)
    await reconcile(emulator, reconciler)
    assert node_set(emulator)[2] == 1
    act_as_statefulset_controller(emulator, NODES, readyReplicas=3, updatedReplicas=2,
                                  currentRevision="r1", updateRevision="r2")  # fmt: skip
    await reconcile(emulator, reconciler)
    assert node_set(emulator)[2] == 0
    act_as_statefulset_controller(emulator, NODES, readyReplicas=3, updatedReplicas=3,
                                  currentRevision="r2", updateRevision="r2")  # fmt: skip
    outcome = await reconcile(emulator, reconciler)
    assert outcome.converged and outcome.status["phase"] == "Running"


async def test_objects_a_chain_no_longer_asks_for_are_deleted(emulator, reconciler):
    emulator.objects[CHAINS, NAMESPACE, "mychain"] = chain_body({"proxy": {"ingress": {"enabled": True}}})
    await reconcile(emulator, reconciler)
    assert live(emulator, "networking.k8s.io/v1/ingresses", "mychain")

    patch_chain(emulator, {"proxy": {"ingress": {"enabled": False}}, "pdb": {"enabled": False}})
    await reconcile(emulator, reconciler)
    assert live(emulator, "networking.k8s.io/v1/ingresses", "mychain") is None
    assert live(emulator, "policy/v1/poddisruptionbudgets", NODES) is None
    assert live(emulator, STATEFULSETS, NODES) is not None


async def test_raising_the_storage_size_grows_the_existing_claims(emulator, reconciler):
    emulator.objects[CHAINS, NAMESPACE, "mychain"] = chain_body({"replicas": 2})
    await reconcile(emulator, reconciler)
    for i in range(2):  # what the StatefulSet controller would have made
        emulator.objects["v1/persistentvolumeclaims", NAMESPACE, f"data-mychain-node-{i}"] = {
            "metadata": {"name": f"data-mychain-node-{i}", "namespace": NAMESPACE},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}},
        }

    patch_chain(emulator, {"storage": {"size": "5Gi"}})
    await reconcile(emulator, reconciler)

    for i in range(2):
        claim = live(emulator, "v1/persistentvolumeclaims", f"data-mychain-node-{i}")
        assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    # The StatefulSet's claim template is immutable and stays as created.
    template = live(emulator, STATEFULSETS, NODES)["spec"]["volumeClaimTemplates"][0]
    assert template["spec"]["resources"]["requests"]["storage"] == "1Gi"


async def test_an_object_owned_by_someone_else_is_never_taken_over(emulator, reconciler):
    emulator.objects["v1/configmaps", NAMESPACE, "mychain-config"] = {
        "metadata": {"name": "mychain-config", "namespace": NAMESPACE}, "data": {"mine": "yes"},
    }  # fmt: skip
    emulator.objects[CHAINS, NAMESPACE, "mychain"] = chain_body()
    with pytest.raises(OwnershipConflict, match="mychain-config exists and is not owned by Chain mychain"):
        await reconcile(emulator, reconciler)
    assert live(emulator, "v1/configmaps", "mychain-config")["data"] == {"mine": "yes"}


async def test_an_invalid_spec_is_reported_in_the_status_and_nothing_else_is_written(emulator, reconciler):
    emulator.objects[CHAINS, NAMESPACE, "mychain"] = chain_body({"replicas": 3})
    await reconcile(emulator, reconciler)
    written = writes(emulator)

    patch_chain(emulator, {"storage": {"size": "a lot"}})
    with pytest.raises(ChainSpecError, match=r"storage\.size"):
        await reconcile(emulator, reconciler)

    assert writes(emulator)[len(written):] == [f"PATCH /apis/keychain.dev/v1alpha1/namespaces/{NAMESPACE}/chains/mychain/status"]
    conditions = {c["type"]: c for c in live(emulator, CHAINS, "mychain")["status"]["conditions"]}
    assert (conditions["Degraded"]["status"], conditions["Degraded"]["reason"]) == ("True", "InvalidSpec")
    assert "spec.storage.size" in conditions["Degraded"]["message"]
    assert (conditions["Progressing"]["status"], conditions["Progressing"]["reason"]) == ("False", "InvalidSpec")

    with pytest.raises(ChainSpecError):  # refused again: the same status, no second write
        await reconcile(emulator, reconciler)
    assert len(writes(emulator)) == len(written) + 1


async def test_scale_in_shrinks_the_statefulset_in_the_same_step_that_unlinks_the_node(
    emulator, reconciler, coordinator
):
    for i in range(4):
        coordinator.join(f"mychain-node-{i}", active=True)
    emulator.objects[CHAINS, NAMESPACE, "mychain"] = chain_body({"replicas": 4})
    await reconcile(emulator, reconciler)
    act_as_statefulset_controller(emulator, NODES, readyReplicas=4, updatedReplicas=4,
                                  currentRevision="r1", updateRevision="r1")  # fmt: skip

    patch_chain(emulator, {"replicas": 3})
    await reconcile(emulator, reconciler)
    assert coordinator.removals == ["mychain-node-3"]
    assert node_set(emulator)[1] == 3, "unlinked, so the StatefulSet shrinks at once"

    # The node runs until its pod stops, and a running node registers again: no second removal
    # is needed before the StatefulSet shrinks (the stray is unlinked once the set is steady).
    coordinator.join("mychain-node-3")
    act_as_statefulset_controller(emulator, NODES, readyReplicas=3, updatedReplicas=3,
                                  currentRevision="r1", updateRevision="r1")  # fmt: skip
    await reconcile(emulator, reconciler)
    assert node_set(emulator)[1] == 3
