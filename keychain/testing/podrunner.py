"""The pod runner: the built-in controllers and a kubelet for the kmock emulator, with real processes.

`PodRunner(api_url, root_dir)` watches the emulator (polling it as a controller would list) and
does, each round, what a cluster's control plane and its one node would do:

- **StatefulSets and Deployments** (`keychain.testing.kube_controllers`): pods created and deleted
  in their order, volume claims created from the claim templates (and deleted by the retention
  policy), status written back (`statefulsets/status`, `deployments/status`).
- **Pods** run on the `Kubelet`: each a real process from its container's command line, in a
  network namespace of its own with its own IP, probed; `pods/status` written back. A deleted
  pod stays (with a `deletionTimestamp`) until its process has stopped, as with graceful deletion.
- **Volume claims** are directories under `root_dir/volumes`; they outlive pods and are removed
  with their claim once no pod uses it (the `kubernetes.io/pvc-protection` finalizer).
- **Services**: a ClusterIP Service gets an address on the node's namespace and a relay to a ready
  pod behind it; a headless one gives its pods DNS names (`<pod>.<service>.<ns>.svc[.cluster.local]`).
  Names reach pods through their `/etc/hosts`. The API server itself is the `kubernetes` Service in
  `default`: a TLS relay to the emulator, whose CA and a token are mounted into pods that
  automount their service account, so `keychain operator` runs in cluster as in production.
- **Garbage collection**: an object whose owners are all gone is deleted (background propagation).

Not emulated: the scheduler (every pod runs on the one node), admission (no defaulting, quotas or
webhooks), CEL validation rules, RBAC enforcement (every request is allowed; requests are recorded
by the emulator and checked against the chart's rules separately), authentication (the token is
not checked), Endpoints/EndpointSlice objects, ReplicaSets and ControllerRevisions, NetworkPolicies,
resource limits, image pulls (every image is this checkout), init and sidecar containers, pod IPs
that change on recreation, and search domains (names must be written with `.<ns>.svc`).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keychain.testing.kube_controllers import (
    REVISION_LABEL,
    TEMPLATE_HASH_LABEL,
    CreatePod,
    DeleteClaim,
    DeletePod,
    PodView,
    claim_names,
    orphans,
    plan_deployment,
    plan_statefulset,
    template_revision,
)
from keychain.testing.kube_emulator import ApiError, EmulatorClient, crd_resources
from keychain.testing.kubelet import Kubelet
from keychain.testing.netns import Network, in_namespace
from keychain.testing.tcp_relay import Relay, connector, round_robin

log = logging.getLogger(__name__)

AGENT = "keychain-pod-runner"
POD_FINALIZER = "pod-runner.keychain.dev/terminating"  # holds a deleted pod until its process is gone
PVC_PROTECTION = "kubernetes.io/pvc-protection"
NODE_HOST = "node"
API_PORT = 443
ROUND = 0.25  # seconds between two rounds
GC_EVERY = 4  # rounds between two garbage collections
SUBNET = "10.96.0.0/20"

PODS, CLAIMS, SERVICES = "v1/pods", "v1/persistentvolumeclaims", "v1/services"
STATEFULSETS, DEPLOYMENTS = "apps/v1/statefulsets", "apps/v1/deployments"


class PodRunner:
    """The control plane's controllers and one node's kubelet for the emulator (see module doc)."""

    def __init__(self, api_url: str, root_dir: Path, *, subnet: str = SUBNET) -> None:
        self.api_url = api_url
        self.root_dir = root_dir
        self.subnet = subnet
        self.api = EmulatorClient(api_url, AGENT)
        self.network: Network | None = None
        self.kubelet: Kubelet | None = None
        self.api_address = ""
        self._relays: dict[tuple[str, str, int], Relay] = {}  # (ns, service, port) -> relay
        self._templates: dict[tuple[str, str], dict[str, Any]] = {}  # (owner uid, revision) -> pod template
        self._releasing: set[str] = set()
        self._hosts_text = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []  # failures of rounds, for a test's report
        self._round_done = threading.Condition()
        self.rounds = 0

    # ---- lifecycle ----

    def __enter__(self) -> PodRunner:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self) -> None:
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.network = Network([NODE_HOST], subnet=self.subnet)
        self.network.__enter__()
        self.api_address = self.network.free_address()
        self.network.add_address(NODE_HOST, self.api_address)
        tls = self._api_certificate()
        listener = self._listen(self.api_address, API_PORT)
        emulator = _host_port(self.api_url)
        self._relays[("default", "kubernetes", API_PORT)] = Relay(
            listener, lambda: emulator, connector(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
            tls=tls, name="kube-apiserver",
        )  # fmt: skip
        self.kubelet = Kubelet(self.network, self.root_dir, node_host=NODE_HOST,
                               api_server=(self.api_address, API_PORT))  # fmt: skip
        with contextlib.suppress(ApiError):
            self.api.create(SERVICES, {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"clusterIP": self.api_address, "ports": [{"name": "https", "port": API_PORT}]},
            })  # fmt: skip
        self._thread = threading.Thread(target=self._loop, name="pod-runner", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop every pod and relay, delete every namespace, hosts file and directory made."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self.kubelet is not None:
            self.kubelet.close()
        for relay in self._relays.values():
            relay.close()
        self._relays.clear()
        if self.network is not None:
            self.network.close()
        self.api.close()
        shutil.rmtree(self.root_dir, ignore_errors=True)

    def wait_rounds(self, count: int = 2, timeout: float = 30.0) -> None:
        """Wait until `count` more rounds have run (so a change has been acted on)."""
        with self._round_done:
            target = self.rounds + count
            if not self._round_done.wait_for(lambda: self.rounds >= target, timeout):
                raise TimeoutError(f"the pod runner did not finish {count} rounds in {timeout}s")

    # ---- what tests use ----

    def port_forward(self, namespace: str, service: str, port: int) -> tuple[str, int]:
        """An address on 127.0.0.1 that reaches the Service (as `kubectl port-forward svc/...`)."""
        assert self.network is not None
        deadline = time.monotonic() + 10  # a new Service gets its cluster IP in the runner's next round
        while True:
            svc = self.api.get(SERVICES, namespace, service)
            if svc is not None and svc["spec"].get("clusterIP") not in (None, "", "None"):
                break
            if time.monotonic() > deadline or (svc is not None and svc["spec"].get("clusterIP") == "None"):
                raise ValueError(f"Service {namespace}/{service} has no cluster IP")
            time.sleep(0.1)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        target = (svc["spec"]["clusterIP"], port)
        network = self.network
        relay = Relay(listener, lambda: target, connector(lambda: network.socket(NODE_HOST)),
                      name=f"forward-{service}")  # fmt: skip
        self._relays[(namespace, f"forward:{service}:{len(self._relays)}", port)] = relay
        return relay.address

    def claim_dir(self, namespace: str, claim: str) -> Path:
        """The directory a volume claim is (created on first use)."""
        path = self.volume_path(namespace, claim)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def volume_path(self, namespace: str, claim: str) -> Path:
        """Where a volume claim's directory is (whether or not it exists)."""
        return self.root_dir / "volumes" / namespace / claim

    def pod_logs(self, namespace: str, name: str, lines: int = 40) -> str:
        assert self.kubelet is not None
        return self.kubelet.logs(f"{namespace}/{name}", lines)

    def pod_address(self, namespace: str, name: str) -> str | None:
        assert self.kubelet is not None
        run = self.kubelet.pods.get(f"{namespace}/{name}")
        return run.address if run else None

    def pod_pid(self, namespace: str, name: str) -> int | None:
        assert self.kubelet is not None
        run = self.kubelet.pods.get(f"{namespace}/{name}")
        return run.process.pid if run and run.process else None

    # ---- the loop ----

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._round()
            except Exception as exc:
                if not self._stop.is_set():
                    log.exception("pod runner round failed")
                    self.errors.append(repr(exc))
            with self._round_done:
                self.rounds += 1
                self._round_done.notify_all()
            self._stop.wait(max(0.0, ROUND - (time.monotonic() - started)))

    def _round(self) -> None:
        pods = self.api.list(PODS)
        claims = self.api.list(CLAIMS)
        services = self.api.list(SERVICES)
        sets = self.api.list(STATEFULSETS)
        deployments = self.api.list(DEPLOYMENTS)
        if self.rounds % GC_EVERY == 0:
            self._collect_garbage([(PODS, pods), (CLAIMS, claims), (SERVICES, services), (STATEFULSETS, sets),
                                   (DEPLOYMENTS, deployments)])  # fmt: skip
        self._services(services, pods)
        self._hosts(services, pods)
        self._pods(pods, claims)
        self._claims(claims, pods)
        for sts in sets:
            self._statefulset(sts, _owned(pods, sts), claims)
        for deployment in deployments:
            self._deployment(deployment, _owned(pods, deployment))

    # ---- garbage collection ----

    def _collect_garbage(self, listed: list[tuple[str, list[dict[str, Any]]]]) -> None:
        # Owners may be custom resources: know the kinds of every CRD applied so far.
        for crd in self.api.list("apiextensions.k8s.io/v1/customresourcedefinitions"):
            self.api.learn(crd_resources(crd))
        more = ("v1/configmaps", "v1/secrets", "policy/v1/poddisruptionbudgets", "networking.k8s.io/v1/ingresses")
        objects = [(resource, obj) for resource, items in listed for obj in items]
        objects += [(resource, obj) for resource in more for obj in self.api.list(resource)]
        owner_kinds = {(ref.get("apiVersion", ""), ref.get("kind", ""))
                       for _, obj in objects for ref in obj["metadata"].get("ownerReferences") or []}  # fmt: skip
        live_uids = {obj["metadata"].get("uid") for _, obj in objects}
        known: set[tuple[str, str]] = set()
        for api_version, kind in owner_kinds:
            try:
                resource = self.api.resource_of(api_version, kind)
            except ValueError:
                continue  # an owner kind we cannot list: never collect its dependents
            known.add((api_version, kind))
            live_uids |= {o["metadata"].get("uid") for o in self.api.list(resource)}
        candidates = [(r, o) for r, o in objects
                      if all((ref.get("apiVersion"), ref.get("kind")) in known
                             for ref in o["metadata"].get("ownerReferences") or [])]  # fmt: skip
        for resource, namespace, name in orphans(candidates, live_uids):
            log.info("garbage collected resource=%s namespace=%s name=%s", resource, namespace, name)
            self.api.delete(resource, namespace, name)

    # ---- services and names ----

    def _listen(self, address: str, port: int) -> socket.socket:
        assert self.network is not None

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(128)
            return sock

        return in_namespace(self.network.host(NODE_HOST).namespace, make)

    def _services(self, services: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        assert self.network is not None
        wanted: set[tuple[str, str, int]] = {k for k in self._relays if k[1] == "kubernetes" or ":" in k[1]}
        for svc in services:
            meta, spec = svc["metadata"], svc["spec"]
            if meta["name"] == "kubernetes" and meta["namespace"] == "default":
                continue
            if spec.get("clusterIP") == "None" or spec.get("type") == "ExternalName":
                continue
            if not spec.get("clusterIP"):
                address = self.network.free_address()
                self.network.add_address(NODE_HOST, address)
                # Served before it is published: a client that reads the cluster IP may connect at once.
                relays = {(meta["namespace"], meta["name"], int(port["port"])): self._service_relay(svc, address, port)
                          for port in spec.get("ports") or []}  # fmt: skip
                patched = self.api.patch(SERVICES, meta["namespace"], meta["name"], {"spec": {"clusterIP": address,
                                         "clusterIPs": [address]}})  # fmt: skip
                if patched is None:
                    for relay in relays.values():
                        relay.close()
                    continue
                self._relays.update(relays)
                spec = patched["spec"]
            for port in spec.get("ports") or []:
                key = (meta["namespace"], meta["name"], int(port["port"]))
                wanted.add(key)
                if key not in self._relays:
                    self._relays[key] = self._service_relay(svc, spec["clusterIP"], port)
        for key in [k for k in self._relays if k not in wanted]:
            self._relays.pop(key).close()
        self._endpoints = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}

    def _service_relay(self, svc: Mapping[str, Any], address: str, port: Mapping[str, Any]) -> Relay:
        assert self.network is not None
        namespace, selector = svc["metadata"]["namespace"], svc["spec"].get("selector") or {}
        target = port.get("targetPort", port["port"])
        network = self.network

        def ready_endpoints() -> list[tuple[str, int]]:
            result = []
            for (ns, _), pod in sorted(self._endpoints.items()):
                labels = pod["metadata"].get("labels") or {}
                if ns != namespace or not selector or any(labels.get(k) != v for k, v in selector.items()):
                    continue
                if pod["metadata"].get("deletionTimestamp") or not _is_ready(pod):
                    continue
                number = _container_port(pod, target)
                if number is not None and pod.get("status", {}).get("podIP"):
                    result.append((pod["status"]["podIP"], number))
            return result

        listener = self._listen(address, int(port["port"]))
        return Relay(listener, round_robin(ready_endpoints), connector(lambda: network.socket(NODE_HOST)),
                     name=f"svc-{svc['metadata']['name']}-{port['port']}")  # fmt: skip

    def _hosts(self, services: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        assert self.kubelet is not None
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        headless = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services
                    if s["spec"].get("clusterIP") == "None"}  # fmt: skip
        for svc in services:
            meta, address = svc["metadata"], svc["spec"].get("clusterIP")
            if address and address != "None":
                base = f"{meta['name']}.{meta['namespace']}"
                lines.append(f"{address} {base}.svc.cluster.local {base}.svc {base}")
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            meta, spec = pod["metadata"], pod["spec"]
            address = self.pod_address(meta["namespace"], meta["name"])
            if not address:
                continue
            names = [meta["name"]]
            subdomain = spec.get("subdomain")
            svc = headless.get((meta["namespace"], subdomain)) if subdomain else None
            if svc is not None and (svc["spec"].get("publishNotReadyAddresses") or _is_ready(pod)):
                fqdn = f"{spec.get('hostname', meta['name'])}.{subdomain}.{meta['namespace']}.svc"
                names = [f"{fqdn}.cluster.local", fqdn, *names]
            lines.append(f"{address} {' '.join(names)}")
        text = "\n".join(lines) + "\n"
        self._hosts_text = text
        self.kubelet.update_hosts(text)

    # ---- pods ----

    def _pods(self, pods: list[dict[str, Any]], claims: list[dict[str, Any]]) -> None:
        assert self.kubelet is not None
        seen = set()
        for pod in pods:
            meta = pod["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            seen.add(key)
            if meta.get("deletionTimestamp"):
                stopped = self.kubelet.stop(key)
                if stopped.is_set() and key not in self._releasing:
                    self._releasing.add(key)
                    finalizers = [f for f in meta.get("finalizers") or [] if f != POD_FINALIZER]
                    self.api.patch(PODS, meta["namespace"], meta["name"], {"metadata": {"finalizers": finalizers}})
                continue
            self._releasing.discard(key)
            run = self.kubelet.pods.get(key)
            if run is not None and run.pod["metadata"].get("uid") != meta.get("uid"):
                self.kubelet.stop(key)  # an older pod of the same name is still going away
                continue
            if run is None:
                if any(r.key == key for r in self.kubelet.pods.values()):
                    continue
                self.kubelet.run(
                    pod, config_maps=self._config_map, secrets=self._secret, claim_dir=self.claim_dir,
                    service_account=self._service_account(pod), hosts_file=self._hosts_text,
                )  # fmt: skip
            status = self.kubelet.status(key)
            if status is not None and _differs(pod.get("status") or {}, status):
                self.api.patch(PODS, meta["namespace"], meta["name"], {"status": status}, subresource="status")
        for key in [k for k in self.kubelet.pods if k not in seen]:
            self.kubelet.stop(key)

    def _config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        found = self.api.get("v1/configmaps", namespace, name)
        return (found.get("data") or {}) if found else None

    def _secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        found = self.api.get("v1/secrets", namespace, name)
        return (found.get("data") or {}) if found else None

    def _service_account(self, pod: Mapping[str, Any]) -> Path | None:
        spec, namespace = pod["spec"], pod["metadata"]["namespace"]
        if spec.get("automountServiceAccountToken") is False:
            return None
        account = spec.get("serviceAccountName") or "default"
        directory = self.root_dir / "serviceaccounts" / f"{namespace}-{account}"
        if not directory.exists():
            directory.mkdir(parents=True)
            (directory / "token").write_text(secrets.token_urlsafe(32))
            shutil.copy(self.root_dir / "tls" / "ca.crt", directory / "ca.crt")
            (directory / "namespace").write_text(namespace)
            for path in (directory, *directory.iterdir()):
                path.chmod(0o755 if path.is_dir() else 0o644)
        return directory

    # ---- claims ----

    def _claims(self, claims: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        assert self.kubelet is not None
        in_use = {(p["metadata"]["namespace"], v["persistentVolumeClaim"]["claimName"])
                  for p in pods for v in p["spec"].get("volumes") or [] if "persistentVolumeClaim" in v}  # fmt: skip
        existing = set()
        for claim in claims:
            meta = claim["metadata"]
            existing.add((meta["namespace"], meta["name"]))
            if meta.get("deletionTimestamp") and (meta["namespace"], meta["name"]) not in in_use:
                finalizers = [f for f in meta.get("finalizers") or [] if f != PVC_PROTECTION]
                self.api.patch(CLAIMS, meta["namespace"], meta["name"], {"metadata": {"finalizers": finalizers}})
            elif (claim.get("status") or {}).get("phase") != "Bound":
                self.claim_dir(meta["namespace"], meta["name"])
                capacity = claim["spec"].get("resources", {}).get("requests", {})
                self.api.patch(CLAIMS, meta["namespace"], meta["name"],
                               {"status": {"phase": "Bound", "capacity": capacity}}, subresource="status")  # fmt: skip
        volumes = self.root_dir / "volumes"
        if volumes.is_dir():
            for ns_dir in volumes.iterdir():
                for claim_dir in ns_dir.iterdir():
                    key = (ns_dir.name, claim_dir.name)
                    if key not in existing and key not in in_use:
                        log.info("volume deleted namespace=%s claim=%s", *key)
                        shutil.rmtree(claim_dir, ignore_errors=True)

    # ---- controllers ----

    def _remember(self, owner: Mapping[str, Any]) -> str:
        template = owner["spec"]["template"]
        revision = template_revision(template)
        self._templates.setdefault((owner["metadata"]["uid"], revision), template)
        return revision

    def _pod_views(self, pods: list[dict[str, Any]], label: str) -> list[PodView]:
        assert self.kubelet is not None
        views = []
        for pod in pods:
            meta = pod["metadata"]
            status = self.kubelet.status(f"{meta['namespace']}/{meta['name']}") or pod.get("status") or {}
            views.append(PodView(
                name=meta["name"], revision=(meta.get("labels") or {}).get(label, ""),
                running=status.get("phase") == "Running", ready=_is_ready({"status": status}),
                terminating=bool(meta.get("deletionTimestamp")),
            ))  # fmt: skip
        return views

    def _statefulset(self, sts: dict[str, Any], pods: list[dict[str, Any]], claims: list[dict[str, Any]]) -> None:
        meta = sts["metadata"]
        self._remember(sts)
        mine = [c for c in claims if c["metadata"]["namespace"] == meta["namespace"]]
        names = [c["metadata"]["name"] for c in mine]
        going = {c["metadata"]["name"] for c in mine if c["metadata"].get("deletionTimestamp")}
        actions, status = plan_statefulset(sts, self._pod_views(pods, REVISION_LABEL), names)
        for action in actions:
            if isinstance(action, CreatePod):
                if action.ordinal is not None and going & set(claim_names(sts, action.ordinal)):
                    continue  # its claim is still being deleted; a new one is made once it is gone
                self._create_set_pod(sts, action, names)
            elif isinstance(action, DeletePod):
                log.info("statefulset deletes pod=%s/%s", meta["namespace"], action.name)
                self.api.delete(PODS, meta["namespace"], action.name)
            elif isinstance(action, DeleteClaim):
                self.api.delete(CLAIMS, meta["namespace"], action.name)
        if _differs(sts.get("status") or {}, status):
            self.api.patch(STATEFULSETS, meta["namespace"], meta["name"], {"status": status}, subresource="status")

    def _create_set_pod(self, sts: dict[str, Any], action: CreatePod, existing_claims: list[str]) -> None:
        meta, spec = sts["metadata"], sts["spec"]
        assert action.ordinal is not None
        retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        volumes = []
        for template, claim in zip(spec.get("volumeClaimTemplates") or [], claim_names(sts, action.ordinal),
                                   strict=True):  # fmt: skip
            volumes.append({"name": template["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}})
            if claim in existing_claims:
                continue
            body = {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": meta["namespace"],
                             "labels": {**(template["metadata"].get("labels") or {}),
                                        **spec["selector"].get("matchLabels", {})},
                             "finalizers": [PVC_PROTECTION]},
                "spec": template["spec"],
            }  # fmt: skip
            if retention.get("whenDeleted") == "Delete":
                body["metadata"]["ownerReferences"] = [_owner(sts, controller=False)]
            with contextlib.suppress(ApiError):
                self.api.create(CLAIMS, body)
        template = self._templates.get((meta["uid"], action.revision)) or spec["template"]
        pod_spec = {**template["spec"], "hostname": action.name, "subdomain": spec.get("serviceName", "")}
        pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), *volumes]
        labels = {**(template["metadata"].get("labels") or {}), REVISION_LABEL: action.revision,
                  "statefulset.kubernetes.io/pod-name": action.name,
                  "apps.kubernetes.io/pod-index": str(action.ordinal)}  # fmt: skip
        self._create_pod(sts, action.name, template, labels, pod_spec)

    def _deployment(self, deployment: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        meta = deployment["metadata"]
        self._remember(deployment)
        actions, status = plan_deployment(deployment, self._pod_views(pods, TEMPLATE_HASH_LABEL))
        for action in actions:
            if isinstance(action, CreatePod):
                template = self._templates.get((meta["uid"], action.revision)) or deployment["spec"]["template"]
                name = f"{meta['name']}-{action.revision[:9]}-{secrets.token_hex(3)[:5]}"
                labels = {**(template["metadata"].get("labels") or {}), TEMPLATE_HASH_LABEL: action.revision}
                self._create_pod(deployment, name, template, labels, dict(template["spec"]))
            elif isinstance(action, DeletePod):
                self.api.delete(PODS, meta["namespace"], action.name)
        if _differs(deployment.get("status") or {}, status):
            self.api.patch(DEPLOYMENTS, meta["namespace"], meta["name"], {"status": status}, subresource="status")

    def _create_pod(self, owner: Mapping[str, Any], name: str, template: Mapping[str, Any],
                    labels: Mapping[str, str], spec: Mapping[str, Any]) -> None:  # fmt: skip
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": owner["metadata"]["namespace"], "uid": secrets.token_hex(16),
                "labels": dict(labels), "annotations": dict(template["metadata"].get("annotations") or {}),
                "ownerReferences": [_owner(owner, controller=True)], "finalizers": [POD_FINALIZER],
            },
            "spec": dict(spec),
            "status": {"phase": "Pending"},
        }  # fmt: skip
        log.info("pod created pod=%s/%s", owner["metadata"]["namespace"], name)
        with contextlib.suppress(ApiError):
            self.api.create(PODS, body)

    # ---- the API server's certificate ----

    def _api_certificate(self) -> ssl.SSLContext:
        directory = self.root_dir / "tls"
        directory.mkdir(parents=True, exist_ok=True)
        names = "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc," \
                f"DNS:kubernetes.default.svc.cluster.local,IP:{self.api_address}"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(directory / "tls.key"), "-out", str(directory / "ca.crt"), "-days", "2",
             "-subj", "/CN=kube-apiserver", "-addext", f"subjectAltName={names}"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / "ca.crt", directory / "tls.key")
        return context


def _host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host, int(port)


def _owner(obj: Mapping[str, Any], *, controller: bool) -> dict[str, Any]:
    return {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""), "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": True}  # fmt: skip


def _owned(pods: list[dict[str, Any]], owner: Mapping[str, Any]) -> list[dict[str, Any]]:
    uid = owner["metadata"].get("uid")
    return [p for p in pods if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])]


def _is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _container_port(pod: Mapping[str, Any], target: int | str) -> int | None:
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


def _differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return any(current.get(k) != v for k, v in wanted.items())
