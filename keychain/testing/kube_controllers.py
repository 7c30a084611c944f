"""The built-in controllers the pod runner plays, as pure decisions: objects in, actions out.

- `plan_statefulset`: ordinals 0..replicas-1; `OrderedReady` (a pod is created only when every
  lower ordinal is Running and Ready, removed only when it is the highest and nothing else is
  terminating) or `Parallel`; `RollingUpdate` with a `partition` (pods at or above it are
  replaced highest ordinal first, one at a time, each Running and Ready before the next);
  `persistentVolumeClaimRetentionPolicy` (a scaled-away ordinal's claim is deleted when
  `whenScaled: Delete`; claims are owned by the StatefulSet, so collected with it, when
  `whenDeleted: Delete`); the status the real controller reports.
- `plan_deployment`: replicas of the current template; a template change rolls out with
  `RollingUpdate` (maxSurge / maxUnavailable) or `Recreate`.
- `orphans`: what the garbage collector deletes (objects whose owners are all gone).

Pods are described by `PodView`; the runner turns actions into API calls. Not emulated:
ReplicaSet and ControllerRevision objects (revisions are template hashes kept by the caller),
`minReadySeconds`, `maxUnavailable` of StatefulSets, `OnDelete`, foreground deletion.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

REVISION_LABEL = "controller-revision-hash"
TEMPLATE_HASH_LABEL = "pod-template-hash"


@dataclass(frozen=True)
class PodView:
    """What a controller needs to know of one of its pods."""

    name: str
    revision: str
    running: bool = False
    ready: bool = False
    terminating: bool = False

    @property
    def healthy(self) -> bool:
        return self.running and self.ready and not self.terminating


@dataclass(frozen=True)
class CreatePod:
    name: str  # empty for a Deployment's pod (the caller names it)
    revision: str
    ordinal: int | None = None


@dataclass(frozen=True)
class DeletePod:
    name: str


@dataclass(frozen=True)
class DeleteClaim:
    name: str


Action = CreatePod | DeletePod | DeleteClaim


def template_revision(template: Mapping[str, Any]) -> str:
    """A stable hash of a pod template: equal templates, equal revisions."""
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    suffix = pod_name[len(set_name) + 1 :] if pod_name.startswith(set_name + "-") else ""
    return int(suffix) if suffix.isdigit() and str(int(suffix)) == suffix else None


def claim_names(sts: Mapping[str, Any], ordinal: int) -> list[str]:
    """The PersistentVolumeClaims of one ordinal: `<template>-<set>-<ordinal>`."""
    name = sts["metadata"]["name"]
    return [f"{t['metadata']['name']}-{name}-{ordinal}" for t in sts["spec"].get("volumeClaimTemplates") or []]


def plan_statefulset(
    sts: Mapping[str, Any], pods: Iterable[PodView], claims: Iterable[str] = ()
) -> tuple[list[Action], dict[str, Any]]:
    """The next actions of the StatefulSet controller and the status it writes."""
    meta, spec = sts["metadata"], sts["spec"]
    name = meta["name"]
    replicas = int(spec.get("replicas", 1))
    ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
    strategy = spec.get("updateStrategy") or {}
    partition = int((strategy.get("rollingUpdate") or {}).get("partition", 0))
    rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
    update = template_revision(spec["template"])
    previous = sts.get("status") or {}
    current = previous.get("currentRevision") or update

    by_ordinal: dict[int, PodView] = {}
    for pod in pods:
        ordinal = ordinal_of(name, pod.name)
        if ordinal is not None:
            by_ordinal[ordinal] = pod
    actions: list[Action] = []
    terminating = any(p.terminating for p in by_ordinal.values())

    # Create the missing ordinals (lowest first); in order, each after its predecessors are ready.
    for ordinal in range(replicas):
        if ordinal in by_ordinal:
            continue
        if ordered and (terminating or not all(by_ordinal.get(i, _ABSENT).healthy for i in range(ordinal))):
            break
        revision = update if ordinal >= partition or not rolling else current
        actions.append(CreatePod(f"{name}-{ordinal}", revision, ordinal))
        if ordered:
            break

    # Remove the ordinals above replicas, highest first.
    surplus = sorted((o for o in by_ordinal if o >= replicas), reverse=True)
    if not actions and surplus:
        if ordered:
            highest = surplus[0]
            others = [p for o, p in by_ordinal.items() if o != highest]
            if not terminating and all(p.healthy for p in others):
                actions.append(DeletePod(by_ordinal[highest].name))
        else:
            actions += [DeletePod(by_ordinal[o].name) for o in surplus if not by_ordinal[o].terminating]

    # Roll the template: the highest outdated ordinal at or above the partition, once all are ready.
    in_range = [by_ordinal.get(i) for i in range(replicas)]
    if not actions and rolling and all(p is not None and p.healthy for p in in_range):
        for ordinal in range(replicas - 1, partition - 1, -1):
            pod = by_ordinal[ordinal]
            if pod.revision != update:
                actions.append(DeletePod(pod.name))
                break

    # A scaled-away ordinal's claims go when its pod is gone, if the policy says so.
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    if retention.get("whenScaled") == "Delete":
        existing = set(claims)
        for claim in sorted(existing):
            for ordinal in _claim_ordinals(sts, claim):
                if ordinal >= replicas and ordinal not in by_ordinal:
                    actions.append(DeleteClaim(claim))

    live = [p for p in by_ordinal.values()]
    updated = sum(1 for p in live if p.revision == update)
    ready = sum(1 for p in live if p.ready and p.running)
    done = updated == replicas and len(live) == replicas and not surplus
    status = {
        "observedGeneration": meta.get("generation", 1),
        "replicas": len(live),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": len(live) if done else sum(1 for p in live if p.revision == current),
        "updatedReplicas": updated,
        "currentRevision": update if done else current,
        "updateRevision": update,
        "collisionCount": 0,
    }
    return actions, status


def _claim_ordinals(sts: Mapping[str, Any], claim: str) -> list[int]:
    name = sts["metadata"]["name"]
    result = []
    for template in sts["spec"].get("volumeClaimTemplates") or []:
        prefix = f"{template['metadata']['name']}-"
        if claim.startswith(prefix):
            ordinal = ordinal_of(name, claim[len(prefix) :])
            if ordinal is not None:
                result.append(ordinal)
    return result


_ABSENT = PodView("", "")


def _scaled(value: int | str | None, replicas: int, default: str, *, round_up: bool) -> int:
    value = default if value is None else value
    if isinstance(value, str) and value.endswith("%"):
        exact = replicas * int(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def plan_deployment(deployment: Mapping[str, Any], pods: Sequence[PodView]) -> tuple[list[Action], dict[str, Any]]:
    """The next actions of the Deployment controller and the status it writes."""
    meta, spec = deployment["metadata"], deployment["spec"]
    replicas = int(spec.get("replicas", 1))
    update = template_revision(spec["template"])
    strategy = spec.get("strategy") or {}
    alive = [p for p in pods if not p.terminating]
    new = [p for p in alive if p.revision == update]
    old = [p for p in alive if p.revision != update]
    actions: list[Action] = []

    def worst_first(group: list[PodView]) -> list[PodView]:
        return sorted(group, key=lambda p: (p.healthy, p.name))

    if strategy.get("type") == "Recreate":
        if old:
            actions += [DeletePod(p.name) for p in old]
        elif not any(p.terminating for p in pods):
            actions += [CreatePod("", update) for _ in range(replicas - len(new))]
    else:
        rolling = strategy.get("rollingUpdate") or {}
        surge = _scaled(rolling.get("maxSurge"), replicas, "25%", round_up=True)
        unavailable = _scaled(rolling.get("maxUnavailable"), replicas, "25%", round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        room = replicas + surge - len(alive)
        actions += [CreatePod("", update) for _ in range(max(0, min(replicas - len(new), room)))]
        available = sum(1 for p in alive if p.healthy)
        can_take = available - (replicas - unavailable)
        for pod in worst_first(old):
            if not pod.healthy or can_take > 0:
                actions.append(DeletePod(pod.name))
                can_take -= 1 if pod.healthy else 0
        for pod in worst_first(new)[: max(0, len(new) - replicas)]:
            actions.append(DeletePod(pod.name))

    available = sum(1 for p in alive if p.healthy)
    status: dict[str, Any] = {
        "observedGeneration": meta.get("generation", 1),
        "replicas": len(alive),
        "updatedReplicas": len(new),
        "readyReplicas": sum(1 for p in alive if p.ready and p.running),
        "availableReplicas": available,
        "unavailableReplicas": max(0, replicas - available),
        "conditions": [
            {"type": "Available", "status": "True" if available >= max(1, replicas) or replicas == 0 else "False",
             "reason": "MinimumReplicasAvailable" if available >= replicas else "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "True",
             "reason": "NewReplicaSetAvailable" if len(new) == replicas == available else "ReplicaSetUpdated"},
        ],
    }  # fmt: skip
    return actions, status


def orphans(objects: Iterable[tuple[str, Mapping[str, Any]]], live_uids: set[str]) -> list[tuple[str, str, str]]:
    """(resource, namespace, name) of every object with owner references none of which is alive."""
    result = []
    for resource, obj in objects:
        meta = obj.get("metadata") or {}
        owners = meta.get("ownerReferences") or []
        if owners and not any(o.get("uid") in live_uids for o in owners):
            result.append((resource, meta.get("namespace", ""), meta["name"]))
    return result
