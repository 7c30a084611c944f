"""Shared fixtures of the operator tests: Chain bodies, the kmock emulator's resources, a fake coordinator."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kmock
import kmock._internal.parsing as kmock_parsing
import kopf
import pytest
from fake_coordinator import FakeCoordinator
from keychain.operator.handlers import HandlerSettings, build_registry
from keychain.operator.kube import KubeApi
from keychain.operator.main import coordinators_at
from keychain.operator.reconcile import CoordinatorFactory, Reconciler

from keychain.testing.helm import render_chart
from keychain.testing.kube_controllers import PodView, plan_statefulset, template_revision
from keychain.testing.kube_emulator import VersioningEmulator
from keychain.testing.rbac import ApiRequest, Policy, Report, ServiceAccount

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
    "v1/secrets": {"kind": "Secret", "namespaced": True, "verbs": {"get", "create", "patch"}},
    "networking.k8s.io/v1/networkpolicies": {"kind": "NetworkPolicy", "namespaced": True,
                                             "verbs": {"get", "create", "patch"}},
    "cert-manager.io/v1/certificates": {"kind": "Certificate", "namespaced": True, "verbs": {"get", "create", "patch"}},
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


def _parse_path_with_namespaces(path: str) -> Any:
    """kmock's path parser, which fails on the Namespace resource itself (/api/v1/namespaces[/name])."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"] and len(parts) in (3, 4) and parts[2] == "namespaces":
        return kmock_parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    return _kmock_parse_path(path)


_kmock_parse_path = kmock_parsing.parse_path


@pytest.fixture
def namespaces_resource(monkeypatch: pytest.MonkeyPatch, emulator: kmock.KubernetesEmulator) -> None:
    """Lets the emulator serve Namespaces, which an operator watching listed namespaces follows."""
    monkeypatch.setattr(kmock_parsing, "parse_path", _parse_path_with_namespaces)
    emulator.objects["v1/namespaces", None, NAMESPACE] = {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "resourceVersion": "1"},
    }  # fmt: skip


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": VersioningEmulator}


@pytest.fixture
def emulator(kmock: kmock.KubernetesEmulator) -> Iterator[kmock.KubernetesEmulator]:
    for resource, info in RESOURCES.items():
        kmock.resources[resource] = info
    yield kmock
    requests = api_requests(kmock)
    denied = chart_policy(getattr(kmock, "watch_namespaces", ())).check(requests).denied
    assert not denied, "the chart's RBAC rules do not allow: " + "; ".join(map(str, denied))
    if not getattr(kmock, "watch_namespaces", ()):
        RECORDED.extend(requests)


# RBAC: every request a test makes to the emulator is checked against the chart's rendered rules (the
# operator's ServiceAccount and its bindings) when the test ends; a forbidden one fails the test. The
# requests of all operator tests together must also use every rule the chart grants (least privilege):
# checked when every test that uses the emulator ran and passed (see pytest_sessionfinish).
CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "keychain"
RELEASE, RELEASE_NAMESPACE = "keychain", "keychain-system"
RECORDED: list[ApiRequest] = []


def api_requests(emulator: kmock.KubernetesEmulator) -> list[ApiRequest]:
    """The authorizer's view of every request the emulator has served."""
    return [ApiRequest.parse(r.method.value, r.url.path, r.url.query_string) for r in emulator]


@functools.cache
def chart_policy(watch_namespaces: tuple[str, ...] = ()) -> Policy:
    """The rules the chart binds to the operator's ServiceAccount (cluster-wide, or for listed namespaces)."""
    # With certManager.enabled: tests/operator/test_operator_tls.py reconciles a Chain with spec.tls.issuerRef.
    values = {"operator": {"watchNamespaces": list(watch_namespaces)}, "certManager": {"enabled": True}}
    objects = render_chart(CHART, release=RELEASE, namespace=RELEASE_NAMESPACE, values=values)
    account = next(o["metadata"] for o in objects if o["kind"] == "ServiceAccount")
    return Policy.from_objects(objects, ServiceAccount(account["name"], account["namespace"]))


_passed: set[str] = set()
_deselected: list[Any] = []


def pytest_deselected(items: list[Any]) -> None:
    _deselected.extend(items)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown" and report.passed:
        _passed.add(report.nodeid)


def _every_operator_test_ran(session: pytest.Session) -> bool:
    """Whether every test of this directory was collected, none deselected, and each that uses the emulator passed."""
    files = set(Path(__file__).parent.glob("test_*.py"))
    collected = {Path(item.path) for item in session.items}
    needed = {item.nodeid for item in session.items if "emulator" in getattr(item, "fixturenames", ())}
    deselected = any(Path(item.path).parent == Path(__file__).parent for item in _deselected)
    return files <= collected and not deselected and bool(needed) and needed <= _passed


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus != pytest.ExitCode.OK or not _every_operator_test_ran(session):
        return  # a partial run cannot tell an unused rule from an untested one
    report = chart_policy().check(RECORDED)
    session.config.stash[RBAC_REPORT] = report
    if report.unused:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


RBAC_REPORT = pytest.StashKey[Report]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    report = config.stash.get(RBAC_REPORT, None)
    if report is None:
        return
    if config.option.verbose > 0:
        terminalreporter.section("RBAC: every request kind of the operator tests and the rule that allowed it")
        for line in report.allowed_lines():
            terminalreporter.line(line)
    unused = [str(g) for g in report.unused]
    if unused:
        terminalreporter.section("RBAC: rules the chart grants that no operator test used", red=True)
        for line in unused:
            terminalreporter.line(line)
        terminalreporter.line("Least privilege: remove the rule from the chart, or test the operator path that needs it.")


@pytest.fixture
def coordinator() -> Iterator[FakeCoordinator]:
    with FakeCoordinator(CHAIN) as fake:
        yield fake


def plaintext_coordinators_at(urls: list[str]) -> CoordinatorFactory:
    """The fake coordinator speaks plain HTTP: the operator's certificate files are ignored here (tests/operator/
    test_operator_tls.py checks them, and tests/security the admin API's refusals)."""
    plain = coordinators_at(urls)
    return lambda spec, _tls_files: plain(spec, None)


@pytest.fixture
def reconciler(emulator: kmock.KubernetesEmulator, coordinator: FakeCoordinator, tmp_path: Path) -> Reconciler:
    return Reconciler(
        KubeApi.for_host(str(emulator.url).rstrip("/")),
        default_image=IMAGE,
        coordinators=plaintext_coordinators_at([coordinator.url]),
        credentials_dir=tmp_path / "credentials",
    )


@contextlib.asynccontextmanager
async def running_operator(
    emulator: kmock.KubernetesEmulator,
    reconciler: Reconciler,
    *,
    interval: float = 0.2,
    namespaces: tuple[str, ...] = (),
) -> AsyncIterator[None]:
    """kopf with the Chain handlers, against the emulator, in a thread with its own event loop;
    cluster-wide, or watching only `namespaces` (as the chart's operator.watchNamespaces does).

    Its own loop: on exit kopf waits for every task of its loop, and the emulator's
    connection handlers must not count as the operator's.
    """
    emulator.watch_namespaces = namespaces  # the RBAC check then uses the chart's per-namespace Roles
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
        clusterwide=not namespaces,
        namespaces=list(namespaces),
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


def events(emulator: kmock.KubernetesEmulator) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events recorded on the Chain, in order."""
    found = []
    for key, obj in emulator.objects.items():
        if key[0] == kmock.resource("v1/events") and not obj.deleted:
            raw = obj.raw
            if raw.get("involvedObject", {}).get("name") == CHAIN:
                found.append((raw.get("type"), raw.get("reason"), raw.get("message")))
    return found


def live(emulator: kmock.KubernetesEmulator, resource: str, name: str) -> dict[str, Any] | None:
    """An object as the emulator holds it now, or None if absent or deleted."""
    key = (kmock.resource(resource), NAMESPACE, name)
    if key not in emulator.objects or emulator.objects[key].deleted:
        return None
    return copy.deepcopy(emulator.objects[key].raw)


def act_as_statefulset_controller(emulator: kmock.KubernetesEmulator, name: str, **status: Any) -> None:
    """A status as the StatefulSet controller would report it mid-way (kmock runs no controllers)."""
    key = (kmock.resource(STATEFULSETS), NAMESPACE, name)
    emulator.objects[key]["status"] = status


def statefulset_pods_ready(emulator: kmock.KubernetesEmulator, name: str, count: int) -> None:
    """Pods 0..count-1 of the StatefulSet run its current template and are ready: the status is the
    one the pod runner's StatefulSet controller computes for them (keychain.testing.kube_controllers)."""
    key = (kmock.resource(STATEFULSETS), NAMESPACE, name)
    sts = emulator.objects[key].raw
    revision = template_revision(sts["spec"]["template"])
    pods = [PodView(f"{name}-{i}", revision, running=True, ready=True) for i in range(count)]
    emulator.objects[key]["status"] = plan_statefulset(sts, pods)[1]


def writes(emulator: kmock.KubernetesEmulator) -> list[str]:
    """Every create, patch and delete the emulator has received, as `METHOD path` (`POST path name`)."""
    result = []
    for r in emulator:
        if r.method.value in ("POST", "PATCH", "PUT", "DELETE"):
            name = r.data.get("metadata", {}).get("name") if r.method.value == "POST" else None
            result.append(f"{r.method.value} {r.url.path}" + (f" {name}" if name else ""))
    return result
