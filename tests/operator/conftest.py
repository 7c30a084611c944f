"""Shared fixtures of the operator tests: Chain bodies, the kmock emulator's resources, a fake coordinator."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kmock
import kopf
import pytest
from fake_coordinator import FakeCoordinator
from keychain.operator.handlers import HandlerSettings, build_registry
from keychain.operator.kube import KubeApi
from keychain.operator.main import coordinators_at
from keychain.operator.reconcile import Reconciler

NAMESPACE = "ns1"
CHAIN = "mychain"
UID = "7d3e2f8a-0000-4000-8000-000000000001"
IMAGE = "keychaindb/keychain:0.1.0"
CHAINS = "keychain.dev/v1alpha1/chains"
STATEFULSETS = "apps/v1/statefulsets"
DEPLOYMENTS = "apps/v1/deployments"

# Every resource the operator (and the framework under it) discovers, reads or writes.
RESOURCES: dict[str, dict[str, Any]] = {
    CHAINS: {"kind": "Chain", "singular": "chain", "namespaced": True,
             "verbs": {"get", "list", "watch", "patch"}, "subresources": {"status", "scale"}},
    "apiextensions.k8s.io/v1/customresourcedefinitions": {"kind": "CustomResourceDefinition", "namespaced": False,
                                                          "verbs": {"list", "watch"}},
    "v1/namespaces": {"kind": "Namespace", "namespaced": False, "verbs": {"list", "watch"}},
    "v1/events": {"kind": "Event", "namespaced": True, "verbs": {"create"}},
    "v1/configmaps": {"kind": "ConfigMap", "namespaced": True, "verbs": {"get", "create", "patch"}},
    "v1/services": {"kind": "Service", "namespaced": True, "verbs": {"get", "create", "patch"}},
    "v1/persistentvolumeclaims": {"kind": "PersistentVolumeClaim", "namespaced": True, "verbs": {"get", "patch"}},
    STATEFULSETS: {"kind": "StatefulSet", "namespaced": True, "verbs": {"get", "create", "patch"}},
    DEPLOYMENTS: {"kind": "Deployment", "namespaced": True, "verbs": {"get", "create", "patch"}},
    "policy/v1/poddisruptionbudgets": {"kind": "PodDisruptionBudget", "namespaced": True,
                                       "verbs": {"get", "create", "patch", "delete"}},
    "networking.k8s.io/v1/ingresses": {"kind": "Ingress", "namespaced": True,
                                       "verbs": {"get", "create", "patch", "delete"}},
}  # fmt: skip


def chain_body(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    """A Chain as the API server returns it (defaults are the operator's business here)."""
    return {
        "apiVersion": "keychain.dev/v1alpha1",
        "kind": "Chain",
        "metadata": {"name": CHAIN, "namespace": NAMESPACE, "uid": UID, "generation": 1, "resourceVersion": "1", **meta},
        "spec": copy.deepcopy(spec or {}),
    }


class VersioningEmulator(kmock.KubernetesEmulator):
    """kmock plus what kopf relies on: every write gives the object a new `resourceVersion`.

    kmock keeps objects as plain JSON and never changes their resourceVersion; kopf then
    cannot tell its own patches' echoes from new events and re-handles stale bodies. kopf's
    optimistic `test` of the resourceVersion in its JSON patches is dropped: kmock would
    answer a failed test with a 500 that kopf retries unchanged, where the API server
    answers 422 and kopf re-reads the object.
    """

    _versions = itertools.count(1000)

    def __repr__(self) -> str:
        # The default repr lists every request ever served: far too long for a failure report.
        return f"{type(self).__name__}({len(list(self))} requests)"

    async def _handle(self, request: kmock.Request) -> Any:
        if request.resource is not None and request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            version = str(next(self._versions))
            if isinstance(request.data, dict):
                request.data.setdefault("metadata", {})["resourceVersion"] = version
            elif isinstance(request.data, list):  # a JSON patch
                request.data[:] = [op for op in request.data if op.get("path") != "/metadata/resourceVersion"]
                request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
        return await super()._handle(request)


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": VersioningEmulator}


@pytest.fixture
def emulator(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    for resource, info in RESOURCES.items():
        kmock.resources[resource] = info
    return kmock


@pytest.fixture
def coordinator() -> Iterator[FakeCoordinator]:
    with FakeCoordinator(CHAIN) as fake:
        yield fake


@pytest.fixture
def reconciler(emulator: kmock.KubernetesEmulator, coordinator: FakeCoordinator) -> Reconciler:
    return Reconciler(
        KubeApi.for_host(str(emulator.url).rstrip("/")),
        default_image=IMAGE,
        coordinators=coordinators_at([coordinator.url]),
    )


@contextlib.asynccontextmanager
async def running_operator(
    emulator: kmock.KubernetesEmulator, reconciler: Reconciler, *, interval: float = 0.2
) -> AsyncIterator[None]:
    """kopf with the Chain handlers, against the emulator, in a thread with its own event loop.

    Its own loop: on exit kopf waits for every task of its loop, and the emulator's
    connection handlers must not count as the operator's.
    """
    registry = build_registry(HandlerSettings(interval=interval, retry_delay=interval))

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(emulator.url).rstrip("/"))

    settings = kopf.OperatorSettings()
    settings.persistence.consistency_timeout = 0.1
    settings.watching.reconnect_backoff = 0.1
    settings.background.instant_exit_timeout = 2.0  # let a running timer finish on exit
    stop = threading.Event()
    operator = kopf.operator(
        registry=registry,
        settings=settings,
        memo=kopf.Memo(reconciler=reconciler),
        standalone=True,
        clusterwide=True,
        stop_flag=stop,
    )
    thread = threading.Thread(target=asyncio.run, args=(operator,), name="operator", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 20)  # the emulator keeps serving in this loop meanwhile
        reconciler.close()
        assert not thread.is_alive(), "the operator did not stop"


async def eventually(check: Any, *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `check()` until it returns a truthy value; fail with its last value after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


def live(emulator: kmock.KubernetesEmulator, resource: str, name: str) -> dict[str, Any] | None:
    """An object as the emulator holds it now, or None if absent or deleted."""
    key = (kmock.resource(resource), NAMESPACE, name)
    if key not in emulator.objects or emulator.objects[key].deleted:
        return None
    return copy.deepcopy(emulator.objects[key].raw)


def act_as_statefulset_controller(emulator: kmock.KubernetesEmulator, name: str, **status: Any) -> None:
    """What the StatefulSet controller would report: kmock runs no controllers."""
    key = (kmock.resource(STATEFULSETS), NAMESPACE, name)
    emulator.objects[key]["status"] = status


def writes(emulator: kmock.KubernetesEmulator) -> list[str]:
    """Every create, patch and delete the emulator has received, as `METHOD path` (`POST path name`)."""
    result = []
    for r in emulator:
        if r.method.value in ("POST", "PATCH", "PUT", "DELETE"):
            name = r.data.get("metadata", {}).get("name") if r.method.value == "POST" else None
            result.append(f"{r.method.value} {r.url.path}" + (f" {name}" if name else ""))
    return result
