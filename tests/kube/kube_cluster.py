"""A Kubernetes cluster for the end-to-end tests: the emulator, the pod runner, the chart's operator.

`KubeCluster.start(root)` serves the emulator, starts the pod runner, renders the Helm chart
(`helm install` of the chart with the operator reconciling every second) and applies every object
it renders, so the operator runs as the chart's Deployment does: a pod, in cluster, reaching the
emulator through the `kubernetes` Service and every Chain's coordinators through their pods.
Tests then `apply` Chains, patch them, delete pods and claims, and look at what happened.

`Sampler` records, every 0.25 s, the node StatefulSet's replicas and the coordinator's view of the
chain, so a test can say in which order things happened.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from keychain.testing.helm import render_chart
from keychain.testing.kube_emulator import EmulatorClient, EmulatorThread, RecordedRequest, crd_resources
from keychain.testing.netns import unavailable_reason
from keychain.testing.podrunner import PodRunner
from keychain.testing.rbac import Policy, ServiceAccount

NETNS_UNAVAILABLE = unavailable_reason() or (
    None if shutil.which("openssl") else "the `openssl` command (the API server's certificate) is not installed"
)


def needs_pods() -> list[pytest.MarkDecorator]:
    """Marks for a module that runs pods: real processes in namespaces, so root is needed."""
    return [
        pytest.mark.netns,
        pytest.mark.process,
        pytest.mark.slow,
        pytest.mark.skipif(NETNS_UNAVAILABLE is not None, reason=f"pods need network namespaces: {NETNS_UNAVAILABLE}"),
    ]


REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "keychain"
EXAMPLE_CHAIN = REPO / "deploy" / "examples" / "chain.yaml"
RELEASE, OPERATOR_NAMESPACE = "keychain", "keychain-system"
NAMESPACE = "default"  # where `kubectl apply -f chain.yaml` puts a Chain that names none
CHAINS = "keychain.dev/v1alpha1/chains"
STATEFULSETS, DEPLOYMENTS, PODS, CLAIMS = "apps/v1/statefulsets", "apps/v1/deployments", "v1/pods", \
    "v1/persistentvolumeclaims"  # fmt: skip
TEST_AGENT = "kubectl"
# Set to 1 to keep the operator's every step in its pod's log (shown when a scenario fails).
OPERATOR_VERBOSE = os.environ.get("KEYCHAIN_KUBE_OPERATOR_VERBOSE") == "1"


def wait_until[T](what: str, check: Callable[[], T], timeout: float, interval: float = 0.25,
                  report: Callable[[], str] | None = None) -> T:  # fmt: skip
    """Poll `check` until it returns something truthy; fail with `what` (and `report()`) after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # a pod still starting, a connection refused
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    detail = f"\n{report()}" if report else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}{detail}")


@dataclass
class KubeCluster:
    emulator: EmulatorThread
    runner: PodRunner
    api: EmulatorClient
    chart_objects: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def running(cls, root: Path, *, operator_interval: float = 1.0) -> Iterator[KubeCluster]:
        with EmulatorThread() as emulator, PodRunner(emulator.url, root / "runner") as runner:
            api = EmulatorClient(emulator.url, TEST_AGENT)
            cluster = cls(emulator, runner, api)
            try:
                cluster.helm_install({"operator": {"interval": operator_interval, "verbose": OPERATOR_VERBOSE}})
                yield cluster
            finally:
                api.close()

    # ---- installing and applying ----

    def helm_install(self, values: dict[str, Any]) -> None:
        """Apply every object the chart renders (CRDs first, as Helm does)."""
        objects = render_chart(CHART, release=RELEASE, namespace=OPERATOR_NAMESPACE, values=values)
        self.chart_objects += objects
        for obj in objects:
            if obj["kind"] == "CustomResourceDefinition":
                resources = crd_resources(obj)
                self.emulator.add_resources(resources)
                self.api.learn(resources)
        time.sleep(0.2)  # the emulator adds the resources on its own loop
        self.api.apply(objects, namespace=OPERATOR_NAMESPACE)

    def apply_file(self, path: Path) -> list[dict[str, Any]]:
        """`kubectl apply -f path` into the default namespace."""
        objects = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        self.api.apply(objects, namespace=NAMESPACE)
        return objects

    # ---- reading ----

    def chain(self, name: str) -> dict[str, Any] | None:
        return self.api.get(CHAINS, NAMESPACE, name)

    def chain_status(self, name: str) -> dict[str, Any]:
        return (self.chain(name) or {}).get("status") or {}

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        conditions = self.chain_status(name).get("conditions") or []
        return next((c for c in conditions if c["type"] == kind), {})

    def pods(self, prefix: str) -> dict[str, dict[str, Any]]:
        return {p["metadata"]["name"]: p for p in self.api.list(PODS, NAMESPACE)
                if p["metadata"]["name"].startswith(prefix)}  # fmt: skip

    def rbac_policy(self) -> Policy:
        """The rules the installed chart binds to the operator's ServiceAccount."""
        account = next(o["metadata"] for o in self.chart_objects if o["kind"] == "ServiceAccount")
        return Policy.from_objects(self.chart_objects, ServiceAccount(account["name"], account["namespace"]))

    def operator_requests(self) -> list[RecordedRequest]:
        """Every request the operator made (the others come from the runner and the test)."""
        agents = (self.runner.api.agent, TEST_AGENT)
        return [r for r in self.emulator.requests() if not r.agent.startswith(agents)]

    def coordinator_status(self, chain: str, replicas: int = 3) -> dict[str, Any] | None:
        """The coordinator's /v1/status from the first member pod that answers (over HTTPS, trusting the
        Chain's CA, when the operator issued its certificates: the admin API's reads are open for probes)."""
        context = self._chain_ca_context(chain)
        for i in range(replicas):
            address = self.http_forward(f"{chain}-coord-{i}", 7080)
            if address is None:
                continue
            url = f"{'https' if context else 'http'}://{address}/v1/status"
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    return json.loads(response.read())
            except (OSError, urllib.error.URLError, ValueError):
                continue
        return None

    def _chain_ca_context(self, chain: str) -> ssl.SSLContext | None:
        secret = self.api.get("v1/secrets", NAMESPACE, f"{chain}-tls-ca")
        if secret is None:
            return None
        context = ssl.create_default_context(cadata=base64.b64decode(secret["data"]["ca.crt"]).decode())
        context.check_hostname = False  # reached through a forward at 127.0.0.1, not by the pod's name
        return context

    def chain_view(self, chain: str) -> dict[str, Any] | None:
        status = self.coordinator_status(chain)
        if not status:
            return None
        return next((c for c in status["chains"] if c["name"] == chain), None)

    def http_forward(self, pod: str, port: int) -> str | None:
        """host:port on 127.0.0.1 reaching the pod's port (one relay per pod and port, reused)."""
        kubelet = self.runner.kubelet
        assert kubelet is not None
        run = kubelet.pods.get(f"{NAMESPACE}/{pod}")
        if run is None or run.stopping:
            return None
        relay = run.forwards.get(port)
        if relay is None:
            relay = run.forwards[port] = kubelet.port_forward(run, port)
        return f"127.0.0.1:{relay.address[1]}"

    def report(self, chain: str = "mychain") -> str:
        """What to show when a scenario fails: the Chain's status, the pods, their logs' tails."""
        parts = [f"chain status: {json.dumps(self.chain_status(chain), indent=1)}"]
        for name, pod in sorted(self.pods("").items()):
            phase = (pod.get("status") or {}).get("phase")
            parts.append(f"--- pod {name} phase={phase} ---\n{self.runner.pod_logs(NAMESPACE, name, 15)}")
        operator = [p for p in self.api.list(PODS, OPERATOR_NAMESPACE)]
        for pod in operator:
            parts.append(f"--- operator {pod['metadata']['name']} ---\n"
                         f"{self.runner.pod_logs(OPERATOR_NAMESPACE, pod['metadata']['name'], 30)}")  # fmt: skip
        parts.append(f"runner errors: {self.runner.errors[-5:]}")
        return "\n".join(parts)


@dataclass
class Sample:
    at: float
    replicas: int | None  # the node StatefulSet's spec.replicas
    members: tuple[tuple[str, str], ...]  # (id, role) in chain order, per the coordinator
    pods: dict[str, tuple[str, bool]]  # node pod -> (uid, ready)
    epoch: int = 0  # the chain's configuration epoch


@dataclass
class Sampler:
    """Samples the node StatefulSet and the chain's members every `interval` seconds."""

    cluster: KubeCluster
    chain: str
    interval: float = 0.25
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            sts = self.cluster.api.get(STATEFULSETS, NAMESPACE, f"{self.chain}-node")
            view = self.cluster.chain_view(self.chain)
            if view is None:
                continue
            members = tuple((m["id"], m["role"]) for m in view["members"])
            pods = {name: (pod["metadata"]["uid"], _ready(pod))
                    for name, pod in self.cluster.pods(f"{self.chain}-node-").items()
                    if not pod["metadata"].get("deletionTimestamp")}  # fmt: skip
            self.samples.append(Sample(time.monotonic(), sts["spec"]["replicas"] if sts else None, members, pods,
                                       view["epoch"]))

    def replicas_history(self) -> list[int]:
        values = [s.replicas for s in self.samples if s.replicas is not None]
        return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]

    def membership_history(self) -> list[tuple[tuple[str, str], ...]]:
        return [s.members for i, s in enumerate(self.samples) if i == 0 or self.samples[i - 1].members != s.members]


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
