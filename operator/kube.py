"""A small typed-by-kind Kubernetes client: get, create, merge-patch, delete, as plain dicts.

It rides on the official client's `ApiClient` (authentication, TLS, in-cluster and
kubeconfig loading) but sends raw JSON, because the operator works with the rendered dicts
and compares them with the live objects field by field; the generated model classes
would drop or reshape fields on the way.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import kubernetes
from keychain.operator.spec import API_VERSION, KIND, PLURAL

log = logging.getLogger(__name__)

# (apiVersion, kind) -> plural, for every kind the operator reads or writes.
PLURALS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("cert-manager.io/v1", "Certificate"): "certificates",
    ("v1", "Service"): "services",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("apps/v1", "Deployment"): "deployments",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    (API_VERSION, KIND): PLURAL,
}
MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    try:
        plural = PLURALS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the operator does not manage {kind} ({api_version})") from None
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


class KubeApi:
    def __init__(self, client: kubernetes.client.ApiClient, *, timeout: float = 10.0) -> None:
        self._client = client
        self._timeout = timeout

    @classmethod
    def from_environment(cls) -> KubeApi:
        """In a pod, the service account; elsewhere, the current kubeconfig context."""
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        return cls(kubernetes.client.ApiClient())

    @classmethod
    def for_host(cls, host: str) -> KubeApi:
        """An unauthenticated client of one API server URL (a local proxy, an emulator)."""
        configuration = kubernetes.client.Configuration(host=host)
        return cls(kubernetes.client.ApiClient(configuration))

    def close(self) -> None:
        """Drop pooled connections (a pool keeps them open between calls)."""
        self._client.rest_client.close()

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        status, body = self._call("GET", object_path(api_version, kind, namespace, name))
        if status == 404:
            return None
        return self._checked(status, body)

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta["namespace"])
        status, body = self._call("POST", path, manifest)
        log.info("created kind=%s name=%s namespace=%s", manifest["kind"], meta["name"], meta["namespace"])
        return self._checked(status, body)

    def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any], *, status: bool = False
    ) -> dict[str, Any]:
        path = object_path(api_version, kind, namespace, name) + ("/status" if status else "")
        code, body = self._call("PATCH", path, patch, content_type=MERGE_PATCH)
        if not status:
            log.info("patched kind=%s name=%s namespace=%s", kind, name, namespace)
        return self._checked(code, body)

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete an object; False if it was already gone."""
        code, body = self._call("DELETE", object_path(api_version, kind, namespace, name))
        if code == 404:
            return False
        self._checked(code, body)
        log.info("deleted kind=%s name=%s namespace=%s", kind, name, namespace)
        return True

    def _call(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        request = self._client.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self._client.call_api(*request, _request_timeout=self._timeout)
        raw = response.read()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        return response.status, payload

    @staticmethod
    def _checked(status: int, body: Any) -> dict[str, Any]:
        if 200 <= status < 300 and isinstance(body, dict):
            return body
        message = body.get("message") if isinstance(body, dict) else str(body)[:200]
        raise KubeError(status, message or "unexpected answer")
