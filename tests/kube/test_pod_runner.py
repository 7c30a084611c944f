"""The pod runner on its own: small workloads whose pods report what they see.

Each pod runs a short Python program that records its user, home, hostname, environment and
command line, what it can write, and the names it can resolve, into its volume, then serves HTTP
(its readiness probe). The tests read those records and talk to the pods through Services.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kube_cluster import needs_pods, wait_until

from keychain.testing.kube_emulator import EmulatorClient, EmulatorThread
from keychain.testing.podrunner import PodRunner

pytestmark = [*needs_pods(), pytest.mark.timeout(300)]

NS = "apps"
STATEFULSETS, DEPLOYMENTS, PODS, CLAIMS, SERVICES = (
    "apps/v1/statefulsets", "apps/v1/deployments", "v1/pods", "v1/persistentvolumeclaims", "v1/services",
)  # fmt: skip

# What each pod runs: record what it sees in /data/seen.json (or /tmp when it has no /data), then serve.
PROGRAM = r"""
import http.server, json, os, pwd, socket, sys
seen = {"uid": os.getuid(), "gid": os.getgid(), "user": pwd.getpwuid(os.getuid()).pw_name,
        "home": os.environ.get("HOME"), "cwd": os.getcwd(), "hostname": socket.gethostname(),
        "argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items() if k.startswith(("POD", "GREETING", "KUBERNETES"))},
        "bytecode": sys.dont_write_bytecode}
for path in ("/usr/seen", "/tmp/seen"):
    try:
        open(path, "w").close(); seen[path] = "written"
    except OSError as e:
        seen[path] = e.strerror
for name in sys.argv[2:]:
    try:
        seen["resolved:" + name] = socket.gethostbyname(name)
    except OSError as e:
        seen["resolved:" + name] = "unresolved"
target = "/data" if os.path.isdir("/data") else "/tmp"
with open(os.path.join(target, "seen.json"), "w") as f:
    json.dump(seen, f)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"pod": socket.gethostname()}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
"""


def container(*names: str, data: bool = True) -> dict[str, Any]:
    return {
        "name": "app", "image": "example/app:1",
        "command": ["python3", "-c", PROGRAM],
        "args": ["$(GREETING)-$(POD_NAME)", *names],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}}],
        "ports": [{"name": "http", "containerPort": 8000}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        "securityContext": {"readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}] if data else [],
    }  # fmt: skip


def statefulset(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": NS},
        "spec": {
            "replicas": replicas, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"securityContext": {"fsGroup": 10001}, "terminationGracePeriodSeconds": 5,
                                  "containers": [container("db-0.db.apps.svc", "db-1.db.apps.svc", "web.apps.svc")]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                      "spec": {"resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }  # fmt: skip


def service(name: str, selector: dict[str, str], *, headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    if headless:
        spec |= {"clusterIP": "None", "publishNotReadyAddresses": True}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS}, "spec": spec}


class Cluster:
    def __init__(self, runner: PodRunner, api: EmulatorClient) -> None:
        self.runner, self.api = runner, api

    def pod(self, name: str) -> dict[str, Any] | None:
        return self.api.get(PODS, NS, name)

    def ready(self, name: str) -> bool:
        pod = self.pod(name)
        conditions = ((pod or {}).get("status") or {}).get("conditions") or []
        return not (pod or {}).get("metadata", {}).get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True" for c in conditions)  # fmt: skip

    def seen(self, claim: str) -> dict[str, Any]:
        return json.loads((self.runner.volume_path(NS, claim) / "seen.json").read_text())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("runner")
    with EmulatorThread() as emulator, PodRunner(emulator.url, root / "runner") as runner:
        api = EmulatorClient(emulator.url, "kubectl")
        api.create("v1/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "settings", "namespace": NS}, "data": {"greeting": "hello"}})
        try:
            yield Cluster(runner, api)
        finally:
            api.close()


def test_statefulset_pods_start_in_order_as_the_image_user_with_their_names_volumes_and_probes(cluster: Cluster):
    cluster.api.create(SERVICES, service("db", {"app": "db"}, headless=True))
    cluster.api.create(STATEFULSETS, statefulset(2))
    deadline = time.monotonic() + 90
    while not (cluster.ready("db-0") and cluster.ready("db-1")):
        assert time.monotonic() < deadline, "the StatefulSet's pods did not become ready"
        if cluster.pod("db-1") is not None:
            assert cluster.ready("db-0"), "db-1 was created before db-0 was ready (OrderedReady)"
        time.sleep(0.1)
    sts = wait_until("the status", lambda: (cluster.api.get(STATEFULSETS, NS, "db") or {}).get("status", {})
                     .get("readyReplicas") == 2 and cluster.api.get(STATEFULSETS, NS, "db")["status"], 30)  # fmt: skip
    assert sts["currentRevision"] == sts["updateRevision"] and sts["updatedReplicas"] == 2

    seen = wait_until("db-1's record", lambda: cluster.seen("data-db-1"), 30)
    assert (seen["uid"], seen["gid"], seen["user"], seen["home"], seen["cwd"]) == (10001, 10001, "keychain", "/data",
                                                                                   "/data")  # fmt: skip
    assert seen["hostname"] == "db-1" and seen["argv"][0] == "hello-db-1", "downward API and $(VAR) expansion"
    assert seen["bytecode"] is True, "PYTHONDONTWRITEBYTECODE from the image"
    assert seen["env"]["KUBERNETES_SERVICE_HOST"] == cluster.runner.api_address
    assert seen["/usr/seen"] == "Read-only file system" and seen["/tmp/seen"] == "written"
    assert seen["resolved:db-0.db.apps.svc"] == cluster.pod("db-0")["status"]["podIP"]
    assert seen["resolved:db-1.db.apps.svc"] == cluster.pod("db-1")["status"]["podIP"]
    assert cluster.pod("db-0")["status"]["podIP"] != cluster.pod("db-1")["status"]["podIP"]
    claims = {c["metadata"]["name"]: c for c in cluster.api.list(CLAIMS, NS)}
    assert set(claims) == {"data-db-0", "data-db-1"} and claims["data-db-0"]["status"]["phase"] == "Bound"


def test_a_service_relays_to_ready_pods_and_a_deleted_pod_returns_on_its_volume(cluster: Cluster):
    cluster.api.create(SERVICES, service("web", {"app": "db"}))
    host, port = cluster.runner.port_forward(NS, "web", 80)
    pods = {httpx.get(f"http://{host}:{port}/", timeout=5).json()["pod"] for _ in range(6)}
    assert pods == {"db-0", "db-1"}, "round robin over the ready pods"

    marker = cluster.runner.volume_path(NS, "data-db-1") / "marker"
    marker.write_text("still here")
    uid = cluster.pod("db-1")["metadata"]["uid"]
    assert cluster.api.delete(PODS, NS, "db-1")
    wait_until("db-1 back", lambda: (cluster.pod("db-1") or {}).get("metadata", {}).get("uid") not in (None, uid)
               and cluster.ready("db-1"), 60)  # fmt: skip
    assert marker.read_text() == "still here"
    assert cluster.seen("data-db-1")["resolved:web.apps.svc"] == cluster.api.get(SERVICES, NS, "web")["spec"]["clusterIP"]


def test_a_deployment_rolls_to_a_new_template_and_deleting_its_owner_collects_the_pods(cluster: Cluster):
    template = {"metadata": {"labels": {"app": "front"}}, "spec": {"containers": [container(data=False)]}}
    cluster.api.create(DEPLOYMENTS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "front", "namespace": NS},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "front"}}, "template": template,
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}},
    })  # fmt: skip

    def front() -> dict[str, dict[str, Any]]:
        return {p["metadata"]["name"]: p for p in cluster.api.list(PODS, NS) if p["metadata"]["name"].startswith("front-")
                and not p["metadata"].get("deletionTimestamp")}  # fmt: skip

    wait_until("two ready front pods", lambda: len(front()) == 2 and all(cluster.ready(n) for n in front()), 60)
    first = set(front())
    changed = {**template, "metadata": {"labels": {"app": "front"}, "annotations": {"rev": "2"}}}
    cluster.api.patch(DEPLOYMENTS, NS, "front", {"spec": {"template": changed}})
    wait_until("two new ready front pods", lambda: len(front()) == 2 and not set(front()) & first
               and all(cluster.ready(n) for n in front()), 90)  # fmt: skip
    def settled() -> dict[str, Any] | None:
        status = cluster.api.get(DEPLOYMENTS, NS, "front")["status"]
        return status if (status.get("replicas"), status.get("updatedReplicas")) == (2, 2) else None

    assert wait_until("the rollout's status", settled, 30)["availableReplicas"] == 2

    assert cluster.api.delete(DEPLOYMENTS, NS, "front")
    assert cluster.api.delete(STATEFULSETS, NS, "db")
    wait_until("every owned pod collected", lambda: not cluster.api.list(PODS, NS), 90)
    assert {c["metadata"]["name"] for c in cluster.api.list(CLAIMS, NS)} == {"data-db-0", "data-db-1"}, (
        "claims outlive their StatefulSet unless its retention policy says otherwise"
    )
    assert cluster.runner.volume_path(NS, "data-db-1").joinpath("marker").exists()
