"""The kmock Kubernetes API emulator, as the operator and pod-runner tests use it.

- `VersioningEmulator`: kmock plus what kopf and controllers rely on (a new `resourceVersion` on
  every write).
- `BUILTIN_RESOURCES` and `crd_resources`: the resources the emulator serves, built-in kinds and
  those of CustomResourceDefinitions (so applying the chart's CRD makes `Chain` servable).
- `EmulatorThread`: the emulator on 127.0.0.1 in a thread with its own event loop, for tests that
  are not coroutines and processes that must reach it for a whole module.
- `EmulatorClient`: a small synchronous client (get, list, create, patch, delete) that names
  itself by its User-Agent, so recorded requests tell the operator's apart from the test's.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import kmock

# resource ("group/version/plural", "v1/plural" for the core group) -> kmock discovery info.
BUILTIN_RESOURCES: dict[str, dict[str, Any]] = {
    "v1/namespaces": {"kind": "Namespace", "namespaced": False, "verbs": {"get", "list", "watch", "create"}},
    "v1/events": {"kind": "Event", "namespaced": True, "verbs": {"get", "list", "create", "patch"}},
    "v1/configmaps": {"kind": "ConfigMap", "namespaced": True, "verbs": {"get", "list", "create", "patch", "delete"}},
    "v1/secrets": {"kind": "Secret", "namespaced": True, "verbs": {"get", "list", "create", "patch", "delete"}},
    "v1/services": {"kind": "Service", "namespaced": True, "verbs": {"get", "list", "create", "patch", "delete"}},
    "v1/serviceaccounts": {"kind": "ServiceAccount", "namespaced": True,
                           "verbs": {"get", "list", "create", "patch", "delete"}},
    "v1/pods": {"kind": "Pod", "namespaced": True, "verbs": {"get", "list", "create", "patch", "delete"},
                "subresources": {"status"}},
    "v1/persistentvolumeclaims": {"kind": "PersistentVolumeClaim", "namespaced": True,
                                  "verbs": {"get", "list", "create", "patch", "delete"}, "subresources": {"status"}},
    "apps/v1/statefulsets": {"kind": "StatefulSet", "namespaced": True,
                             "verbs": {"get", "list", "create", "patch", "delete"}, "subresources": {"status"}},
    "apps/v1/deployments": {"kind": "Deployment", "namespaced": True,
                            "verbs": {"get", "list", "create", "patch", "delete"}, "subresources": {"status"}},
    "policy/v1/poddisruptionbudgets": {"kind": "PodDisruptionBudget", "namespaced": True,
                                       "verbs": {"get", "list", "create", "patch", "delete"}},
    "networking.k8s.io/v1/ingresses": {"kind": "Ingress", "namespaced": True,
                                       "verbs": {"get", "list", "create", "patch", "delete"}},
    "apiextensions.k8s.io/v1/customresourcedefinitions": {"kind": "CustomResourceDefinition", "namespaced": False,
                                                          "verbs": {"get", "list", "watch", "create", "patch"}},
    "rbac.authorization.k8s.io/v1/clusterroles": {"kind": "ClusterRole", "namespaced": False,
                                                  "verbs": {"get", "list", "create", "patch", "delete"}},
    "rbac.authorization.k8s.io/v1/clusterrolebindings": {"kind": "ClusterRoleBinding", "namespaced": False,
                                                         "verbs": {"get", "list", "create", "patch", "delete"}},
    "rbac.authorization.k8s.io/v1/roles": {"kind": "Role", "namespaced": True,
                                           "verbs": {"get", "list", "create", "patch", "delete"}},
    "rbac.authorization.k8s.io/v1/rolebindings": {"kind": "RoleBinding", "namespaced": True,
                                                  "verbs": {"get", "list", "create", "patch", "delete"}},
}  # fmt: skip


def crd_resources(crd: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The emulator resources of a CustomResourceDefinition: one per served version."""
    spec = crd["spec"]
    names = spec["names"]
    result = {}
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        result[f"{spec['group']}/{version['name']}/{names['plural']}"] = {
            "kind": names["kind"],
            "singular": names.get("singular", names["kind"].lower()),
            "namespaced": spec.get("scope", "Namespaced") == "Namespaced",
            "verbs": {"get", "list", "watch", "create", "patch", "update", "delete"},
            "subresources": set(version.get("subresources") or {}),
        }
    return result


KEPT_REQUESTS = 100  # requests the emulator keeps in kmock's own views (see ApiServerEmulator)


class VersioningEmulator(kmock.KubernetesEmulator):
    """kmock plus what kopf relies on: every write gives the object a new `resourceVersion`, and a
    created object with only a `generateName` (kopf's Events) gets a name.

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
                meta = request.data.setdefault("metadata", {})
                meta["resourceVersion"] = version
                if request.action == kmock.action.CREATE and "name" not in meta and meta.get("generateName"):
                    meta["name"] = f"{meta['generateName']}{version}"  # as the API server names it
            elif isinstance(request.data, list):  # a JSON patch
                request.data[:] = [op for op in request.data if op.get("path") != "/metadata/resourceVersion"]
                request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
        return await super()._handle(request)


class ApiServerEmulator(VersioningEmulator):
    """A VersioningEmulator that also does what the API server does to every object it stores:
    a `uid` and `creationTimestamp` on creation, `generation` 1 then +1 on every change of `spec`
    (owner references, garbage collection and controllers' observedGeneration rely on them)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.recorded: list[RecordedRequest] = []

    async def _handle(self, request: kmock.Request) -> Any:
        self.recorded.append(RecordedRequest(request.method.value, request.url.path, request.url.query_string,
                                             str(request.headers.get("User-Agent", ""))))  # fmt: skip
        # kmock keeps every request in each of its views and scans them on every new request,
        # so a long-lived emulator slows down request by request: keep only our own record.
        self._forget_requests()
        if request.resource is not None and not request.subresource:
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                meta = request.data.setdefault("metadata", {})
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", _now())
                meta["generation"] = 1
            elif request.action == kmock.action.UPDATE and request.name is not None:
                key = (request.resource, request.namespace, request.name)
                touches_spec = (isinstance(request.data, dict) and "spec" in request.data) or (
                    isinstance(request.data, list) and any(op.get("path", "").startswith("/spec") for op in request.data)
                )
                if touches_spec and key in self.objects and not self.objects[key].deleted:
                    current = self.objects[key].raw
                    if isinstance(request.data, dict) and _contains(current.get("spec") or {}, request.data["spec"]):
                        pass  # a patch that changes nothing leaves the generation alone
                    else:
                        generation = int(current.get("metadata", {}).get("generation", 1)) + 1
                        if isinstance(request.data, dict):
                            request.data.setdefault("metadata", {})["generation"] = generation
                        else:
                            request.data.append({"op": "add", "path": "/metadata/generation", "value": generation})
        return await super()._handle(request)


    def _forget_requests(self) -> None:
        # A request is matched to its reaction by being among the recent ones: keep those in flight.
        del self._requests[:-KEPT_REQUESTS]
        for payload in self._payloads:
            del payload._requests[:-KEPT_REQUESTS]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator received it."""

    method: str
    path: str
    query: str
    agent: str


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _contains(current: Any, patch: Any) -> bool:
    """Whether merging `patch` into `current` would change nothing."""
    if isinstance(patch, dict):
        return isinstance(current, dict) and all(
            (k not in current) if v is None else (k in current and _contains(current[k], v)) for k, v in patch.items()
        )
    return current == patch


class EmulatorThread:
    """A VersioningEmulator served on 127.0.0.1 from a thread of its own (see module doc)."""

    def __init__(self, resources: Mapping[str, Mapping[str, Any]] = BUILTIN_RESOURCES) -> None:
        self._resources = dict(resources)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self.emulator: ApiServerEmulator | None = None
        self.url = ""

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the emulator did not start: {self._error!r}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with ApiServerEmulator() as emulator, kmock.Server(emulator) as server:
            for resource, info in self._resources.items():
                emulator.resources[resource] = info
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def add_resources(self, resources: Mapping[str, Mapping[str, Any]]) -> None:
        """Serve more resources from now on (e.g. a CRD's, once it is applied)."""
        assert self.emulator is not None and self._loop is not None

        def add() -> None:
            for resource, info in resources.items():
                self.emulator.resources[resource] = info  # type: ignore[union-attr]

        self._loop.call_soon_threadsafe(add)

    def requests(self) -> list[RecordedRequest]:
        """Every request served so far, in order."""
        assert self.emulator is not None
        return list(self.emulator.recorded)


def api_path(resource: str, namespace: str | None = None, name: str | None = None, subresource: str = "") -> str:
    """The URL path of a resource ("apps/v1/statefulsets", "v1/pods"), optionally one object."""
    parts = resource.split("/")
    prefix = "/api/" + parts[0] if len(parts) == 2 else "/apis/" + "/".join(parts[:2])
    path = prefix + (f"/namespaces/{namespace}" if namespace else "") + "/" + parts[-1]
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


RESOURCE_OF_KIND: dict[tuple[str, str], str] = {
    ("v1" if info_key.count("/") == 1 else info_key.rsplit("/", 1)[0], info["kind"]): info_key
    for info_key, info in BUILTIN_RESOURCES.items()
}


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:300]}")
        self.status = status


class EmulatorClient:
    """Synchronous JSON calls to the emulator, naming the caller in the User-Agent."""

    def __init__(self, url: str, agent: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=url, timeout=timeout, headers={"User-Agent": agent})
        self.agent = agent
        self.kinds: dict[tuple[str, str], str] = dict(RESOURCE_OF_KIND)
        self.namespaced: dict[str, bool] = {r: bool(i["namespaced"]) for r, i in BUILTIN_RESOURCES.items()}

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.text)
        return response.json() if response.content else None

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", api_path(resource, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        try:
            return self._call("GET", api_path(resource, namespace))["items"]
        except ApiError as exc:
            if exc.status == 404:
                return []
            raise

    def create(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        namespace = body.get("metadata", {}).get("namespace")
        return self._call("POST", api_path(resource, namespace), json=body)

    def patch(
        self, resource: str, namespace: str | None, name: str, patch: Mapping[str, Any], *, subresource: str = ""
    ) -> dict[str, Any] | None:
        """A merge patch; None when the object is gone."""
        try:
            return self._call(
                "PATCH", api_path(resource, namespace, name, subresource), json=patch,
                headers={"Content-Type": "application/merge-patch+json"},
            )  # fmt: skip
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, resource: str, namespace: str | None, name: str) -> bool:
        """Delete an object; False when it was already gone."""
        try:
            self._call("DELETE", api_path(resource, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def apply(self, manifests: Iterable[Mapping[str, Any]], namespace: str = "default") -> None:
        """What `kubectl apply` does for new objects: create each (in the given namespace when it names none)."""
        for manifest in manifests:
            body = dict(manifest)
            meta = dict(body.get("metadata") or {})
            resource = self.resource_of(body["apiVersion"], body["kind"])
            if self.namespaced.get(resource, True):
                meta.setdefault("namespace", namespace)
            body["metadata"] = meta
            existing = self.get(resource, meta.get("namespace"), meta["name"])
            if existing is None:
                self.create(resource, body)
            else:
                self.patch(resource, meta.get("namespace"), meta["name"], {k: v for k, v in body.items()
                                                                           if k not in ("apiVersion", "kind")})

    def resource_of(self, api_version: str, kind: str) -> str:
        try:
            return self.kinds[(api_version, kind)]
        except KeyError:
            raise ValueError(f"the emulator serves no {kind} ({api_version})") from None

    def learn(self, resources: Mapping[str, Mapping[str, Any]]) -> None:
        """Know the kinds of more resources (a CRD's) for `apply`."""
        for resource, info in resources.items():
            self.kinds[(resource.rsplit("/", 1)[0], info["kind"])] = resource
            self.namespaced[resource] = bool(info.get("namespaced", True))
