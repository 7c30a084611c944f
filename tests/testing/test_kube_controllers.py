"""The pod runner's StatefulSet, Deployment and garbage-collection decisions, without any process."""

from __future__ import annotations

from typing import Any

from keychain.testing.kube_controllers import (
    CreatePod,
    DeleteClaim,
    DeletePod,
    PodView,
    orphans,
    plan_deployment,
    plan_statefulset,
    template_revision,
)

TEMPLATE = {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "db:1"}]}}
NEW_TEMPLATE = {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "db:2"}]}}
OLD, NEW = template_revision(TEMPLATE), template_revision(NEW_TEMPLATE)


def statefulset(replicas: int, *, template: dict = TEMPLATE, partition: int = 0, parallel: bool = False,
                when_scaled: str = "Retain", current: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "metadata": {"name": "db", "uid": "u1", "generation": 4},
        "spec": {
            "replicas": replicas,
            "podManagementPolicy": "Parallel" if parallel else "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": when_scaled},
            "template": template,
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}],
        },
        "status": {"currentRevision": current or OLD},
    }


def healthy(*ordinals: int, revision: str = OLD) -> list[PodView]:
    return [PodView(f"db-{i}", revision, running=True, ready=True) for i in ordinals]


def test_ordered_ready_creates_one_ordinal_at_a_time_each_after_the_previous_is_ready():
    assert plan_statefulset(statefulset(3), [])[0] == [CreatePod("db-0", OLD, 0)]
    starting = [PodView("db-0", OLD, running=True, ready=False)]
    assert plan_statefulset(statefulset(3), starting)[0] == []
    assert plan_statefulset(statefulset(3), healthy(0))[0] == [CreatePod("db-1", OLD, 1)]


def test_parallel_creates_every_missing_ordinal_at_once():
    actions, _ = plan_statefulset(statefulset(3, parallel=True), [])
    assert actions == [CreatePod(f"db-{i}", OLD, i) for i in range(3)]


def test_scale_in_removes_the_highest_ordinal_first_and_waits_for_it_to_go():
    assert plan_statefulset(statefulset(3), healthy(0, 1, 2, 3, 4))[0] == [DeletePod("db-4")]
    going = [*healthy(0, 1, 2, 3), PodView("db-4", OLD, running=True, terminating=True)]
    assert plan_statefulset(statefulset(3), going)[0] == []


def test_a_scaled_away_ordinals_claim_is_deleted_only_when_the_policy_says_so_and_its_pod_is_gone():
    claims = ["data-db-0", "data-db-1", "data-db-2"]
    assert plan_statefulset(statefulset(2), healthy(0, 1), claims)[0] == []
    assert plan_statefulset(statefulset(2, when_scaled="Delete"), healthy(0, 1), claims)[0] == [
        DeleteClaim("data-db-2")
    ]
    assert DeleteClaim("data-db-2") not in plan_statefulset(statefulset(2, when_scaled="Delete"), healthy(0, 1, 2),
                                                            claims)[0]  # fmt: skip


def test_a_template_change_replaces_pods_from_the_highest_ordinal_down_to_the_partition():
    sts = statefulset(3, template=NEW_TEMPLATE, partition=1)
    actions, status = plan_statefulset(sts, healthy(0, 1, 2))
    assert actions == [DeletePod("db-2")]
    assert (status["currentRevision"], status["updateRevision"], status["updatedReplicas"]) == (OLD, NEW, 0)
    # db-2 came back with the new template: db-1 is next, once db-2 is ready.
    rolled = [*healthy(0, 1), PodView("db-2", NEW, running=True, ready=False)]
    assert plan_statefulset(sts, rolled)[0] == []
    rolled = [*healthy(0, 1), *healthy(2, revision=NEW)]
    assert plan_statefulset(sts, rolled)[0] == [DeletePod("db-1")]
    # Below the partition nothing changes; a recreated pod there keeps the current revision.
    done = [*healthy(0), *healthy(1, 2, revision=NEW)]
    assert plan_statefulset(sts, done)[0] == []
    assert plan_statefulset(sts, healthy(1, 2, revision=NEW))[0] == [CreatePod("db-0", OLD, 0)]


def test_the_status_reports_the_rollout_as_the_controller_does():
    sts = statefulset(3, template=NEW_TEMPLATE)
    _, status = plan_statefulset(sts, [*healthy(0, 1), *healthy(2, revision=NEW)])
    assert status == {
        "observedGeneration": 4, "replicas": 3, "readyReplicas": 3, "availableReplicas": 3,
        "currentReplicas": 2, "updatedReplicas": 1, "currentRevision": OLD, "updateRevision": NEW,
        "collisionCount": 0,
    }  # fmt: skip
    _, status = plan_statefulset(sts, healthy(0, 1, 2, revision=NEW))
    assert (status["currentRevision"], status["currentReplicas"], status["updatedReplicas"]) == (NEW, 3, 3)


def deployment(replicas: int, *, template: dict = TEMPLATE, strategy: dict | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "web", "uid": "u2", "generation": 2},
            "spec": {"replicas": replicas, "template": template,
                     "strategy": strategy or {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}}  # fmt: skip


def web(name: str, revision: str, ready: bool = True) -> PodView:
    return PodView(name, revision, running=True, ready=ready)


def test_a_deployment_rolls_with_one_surge_pod_and_never_fewer_available_than_replicas():
    changed = deployment(2, template=NEW_TEMPLATE)
    old = [web("a", OLD), web("b", OLD)]
    assert plan_deployment(changed, old)[0] == [CreatePod("", NEW)]
    surging = [*old, web("c", NEW, ready=False)]
    assert plan_deployment(changed, surging)[0] == [], "nothing old goes before the new pod is ready"
    assert plan_deployment(changed, [*old, web("c", NEW)])[0] == [DeletePod("a")]


def test_a_recreate_deployment_stops_every_old_pod_before_starting_new_ones():
    changed = deployment(1, template=NEW_TEMPLATE, strategy={"type": "Recreate"})
    assert plan_deployment(changed, [web("a", OLD)])[0] == [DeletePod("a")]
    going = [PodView("a", OLD, running=True, terminating=True)]
    assert plan_deployment(changed, going)[0] == []
    assert plan_deployment(changed, [])[0] == [CreatePod("", NEW)]


def test_objects_whose_owners_are_all_gone_are_collected():
    objects = [
        ("v1/pods", {"metadata": {"name": "p", "namespace": "n", "ownerReferences": [{"uid": "gone"}]}}),
        ("v1/pods", {"metadata": {"name": "q", "namespace": "n", "ownerReferences": [{"uid": "gone"}, {"uid": "u"}]}}),
        ("v1/configmaps", {"metadata": {"name": "c", "namespace": "n"}}),
    ]
    assert orphans(objects, {"u"}) == [("v1/pods", "n", "p")]
