"""A small kubelet: each pod a real process in a network namespace of its own, probed, restarted.

`Kubelet(network, root_dir)` runs the pods the pod runner hands it:

- **Network:** a pod is a host of a `netns.Network` (its own namespace, veth on the bridge, its
  own IP, kept for the pod's name so a recreated StatefulSet pod comes back at the same address),
  with its own `/etc/hosts` (written by the runner: pod and Service names).
- **Process:** the first container's exact `command`/`args`, `$(VAR)`s expanded from `env`,
  `envFrom` and the downward API (`keychain.testing.podspec`), started by
  `keychain.testing.podexec` in a root of its own: the image's settings (`Image`: user, HOME,
  PATH, PYTHONDONTWRITEBYTECODE, working directory), the read-only root the container asks for,
  the pod's uid/gid/fsGroup, the hostname. Every image is this checkout.
- **Volumes:** emptyDir is a directory of the pod, a claim is the directory the runner gives it
  (it outlives the pod), a Secret or ConfigMap volume is its files, and a pod that automounts
  its service account gets the token, CA and namespace at the usual path.
- **Probes:** startup, liveness and readiness probes (`httpGet`, `tcpSocket`, `grpc`) are sent
  to the pod's IP from the node's namespace at their period, timeout (at least MIN_PROBE_TIMEOUT)
  and thresholds; a failed liveness probe restarts the container. `exec` probes are not supported (none is rendered).
- **Restarts:** `restartPolicy: Always` with a doubling back-off (from 1 s, capped at 8 s,
  shorter than the kubelet's 10 s to 5 min so tests stay short).

It reports each pod's status (phase, podIP, Ready, container state, restarts) for the runner to
write back. Only one container per pod is run; init containers and sidecars are not.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from keychain.testing.netns import Network
from keychain.testing.podspec import ContainerConfigError, expand_container
from keychain.testing.tcp_relay import Relay, connector

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
BACKOFF_START, BACKOFF_CAP = 1.0, 8.0
# A probe here goes through Python relays in a busy test process, not a native kubelet: shorter
# timeouts than this failed healthy pods on a loaded machine.
MIN_PROBE_TIMEOUT = 3.0
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Image:
    """What the Dockerfile sets: entrypoint, default args, environment, user, working directory."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: Mapping[str, str]
    uid: int
    gid: int
    workdir: str
    expose: tuple[str, ...]  # machine paths the image's files are (the interpreter, this checkout)
    directories: tuple[str, ...] = ()  # made by the image's build, owned by its user
    user_name: str = "keychain"  # its /etc/passwd and /etc/group entries (useradd, groupadd)


def this_checkout() -> Image:
    """The KeychainDB image as the Dockerfile builds it, with this checkout's environment as /opt/keychain."""
    bin_dir = str(Path(sys.executable).parent)
    return Image(
        entrypoint=("keychain",),
        cmd=("--help",),
        env={
            "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONSAFEPATH": "1",
            "HOME": "/data",  # the image user's home (useradd --home-dir /data)
        },
        uid=10001,
        gid=10001,
        workdir="/data",
        expose=tuple(dict.fromkeys([sys.base_prefix, sys.prefix, str(REPO_ROOT)])),
        directories=("/data",),
    )


@dataclass
class ProbeState:
    spec: Mapping[str, Any]
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0


@dataclass
class PodRun:
    """One pod on this kubelet: its sandbox (namespace, directories) and its container's life."""

    key: str  # namespace/name
    pod: dict[str, Any]
    host: str
    address: str
    directory: Path
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    started: bool = False  # the startup probe succeeded (or there is none)
    ready: bool = False
    last_exit: int | None = None
    failure: str = ""  # why the container cannot start (a config error)
    stopping: bool = False
    stopped: threading.Event = field(default_factory=threading.Event)
    probes: dict[str, ProbeState] = field(default_factory=dict)
    forwards: dict[int, Relay] = field(default_factory=dict)
    channels: dict[int, grpc.Channel] = field(default_factory=dict)


Lookup = Callable[[str, str], Mapping[str, str] | None]  # (namespace, name) -> data


class Kubelet:
    """Runs pods as processes in namespaces of `network` (see module doc)."""

    def __init__(
        self,
        network: Network,
        root_dir: Path,
        *,
        node_host: str,
        image: Image | None = None,
        api_server: tuple[str, int] | None = None,
    ) -> None:
        self.network = network
        self.root_dir = root_dir
        self.node_host = node_host  # the namespace probes come from
        self.image = image or this_checkout()
        self.api_server = api_server
        self.pods: dict[str, PodRun] = {}
        self._addresses: dict[str, str] = {}  # pod key -> IP, kept across recreations
        self._hosts = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        self._thread.start()

    # ---- pods in and out ----

    def run(
        self,
        pod: dict[str, Any],
        *,
        config_maps: Lookup,
        secrets: Lookup,
        claim_dir: Callable[[str, str], Path],
        service_account: Path | None,
        hosts_file: str,
    ) -> PodRun:
        """Create the pod's sandbox and start its container (see module doc)."""
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        with self._lock:
            self._hosts += 1
            host = f"pod{self._hosts}"
            address = self._addresses.get(key)
        created = self.network.add_host(host, address)
        with self._lock:
            self._addresses[key] = created.address
        directory = self.root_dir / "pods" / f"{meta['namespace']}-{meta['name']}-{meta.get('uid', '')[:8]}"
        directory.mkdir(parents=True, exist_ok=True)
        run = PodRun(key, pod, host, created.address, directory)
        self.network.write_hosts_file(host, hosts_file + _own_entry(pod, created.address))
        try:
            run.pod = {**pod, "status": {**(pod.get("status") or {}), "podIP": created.address}}
            self._prepare(run, config_maps, secrets, claim_dir, service_account)
        except ContainerConfigError as exc:
            run.failure = str(exc)
        with self._lock:
            self.pods[key] = run
        return run

    def stop(self, key: str) -> threading.Event:
        """Stop a pod (SIGTERM, SIGKILL after its grace period) and remove its sandbox, in the
        background; the returned event is set once it is gone."""
        with self._lock:
            run = self.pods.get(key)
        if run is None:
            done = threading.Event()
            done.set()
            return done
        if not run.stopping:
            run.stopping = True
            threading.Thread(target=self._teardown, args=(run,), name=f"stop-{key}", daemon=True).start()
        return run.stopped

    def close(self) -> None:
        """Stop every pod and wait for them."""
        events = [self.stop(key) for key in list(self.pods)]
        for event in events:
            event.wait(60)
        self._stop.set()
        self._thread.join(10)

    def status(self, key: str) -> dict[str, Any] | None:
        """The pod's `status` as the kubelet reports it."""
        with self._lock:
            run = self.pods.get(key)
        if run is None:
            return None
        running = run.process is not None and run.process.poll() is None
        ready = running and run.ready and not run.stopping
        name = run.pod["spec"]["containers"][0]["name"]
        if running:
            state: dict[str, Any] = {"running": {}}
        elif run.failure:
            state = {"waiting": {"reason": "CreateContainerConfigError", "message": run.failure}}
        else:
            state = {"waiting": {"reason": "CrashLoopBackOff" if run.restarts else "ContainerCreating"}}
        truth = "True" if ready else "False"
        return {
            "phase": "Running" if running else "Pending",
            "podIP": run.address,
            "podIPs": [{"ip": run.address}],
            "hostIP": self.network.address(self.node_host),
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": truth},
                {"type": "Ready", "status": truth},
            ],
            "containerStatuses": [{
                "name": name, "ready": ready, "started": running and run.started,
                "restartCount": run.restarts, "state": state,
                "image": run.pod["spec"]["containers"][0].get("image", ""),
                **({"lastState": {"terminated": {"exitCode": run.last_exit}}} if run.last_exit is not None else {}),
            }],
        }  # fmt: skip

    def update_hosts(self, text: str) -> None:
        """Give every pod these names (and, as the kubelet writes it, its own)."""
        with self._lock:
            runs = [run for run in self.pods.values() if not run.stopping]
        for run in runs:
            with contextlib.suppress(ValueError, OSError):
                self.network.write_hosts_file(run.host, text + _own_entry(run.pod, run.address))

    def logs(self, key: str, lines: int = 40) -> str:
        with self._lock:
            run = self.pods.get(key)
        if run is None:
            return ""
        path = run.directory / "container.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # ---- the sandbox ----

    def _prepare(self, run: PodRun, config_maps: Lookup, secrets: Lookup, claim_dir: Callable[[str, str], Path],
                 service_account: Path | None) -> None:  # fmt: skip
        pod, spec = run.pod, run.pod["spec"]
        namespace = pod["metadata"]["namespace"]
        container = spec["containers"][0]
        pod_security = spec.get("securityContext") or {}
        security = container.get("securityContext") or {}
        uid = int(security.get("runAsUser", pod_security.get("runAsUser", self.image.uid)))
        gid = int(security.get("runAsGroup", pod_security.get("runAsGroup", self.image.gid)))
        fs_group = pod_security.get("fsGroup")
        groups = sorted({gid, *([int(fs_group)] if fs_group is not None else []),
                         *map(int, pod_security.get("supplementalGroups") or [])})  # fmt: skip
        owner_gid = int(fs_group) if fs_group is not None else gid

        referenced_maps = _referenced(container, "configMapRef", "configMapKeyRef")
        referenced_secrets = _referenced(container, "secretRef", "secretKeyRef")
        maps = {n: d for n in referenced_maps if (d := config_maps(namespace, n)) is not None}
        secret_data = {n: d for n in referenced_secrets if (d := secrets(namespace, n)) is not None}
        argv, env = expand_container(
            container, maps, pod, secrets=secret_data,
            image_entrypoint=self.image.entrypoint, image_cmd=self.image.cmd,
        )  # fmt: skip

        sources: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            name = volume["name"]
            if "emptyDir" in volume:
                path = run.directory / "volumes" / name
                path.mkdir(parents=True, exist_ok=True)
                os.chown(path, uid, owner_gid)
            elif "persistentVolumeClaim" in volume:
                path = claim_dir(namespace, volume["persistentVolumeClaim"]["claimName"])
                if fs_group is not None:
                    _chown_tree(path, uid, owner_gid)
            elif "secret" in volume or "configMap" in volume:
                kind = "secret" if "secret" in volume else "configMap"
                ref = volume[kind]
                ref_name = ref.get("secretName") if kind == "secret" else ref.get("name")
                data = (secrets if kind == "secret" else config_maps)(namespace, ref_name)
                if data is None:
                    raise ContainerConfigError(f"{kind} volume {name}: {ref_name!r} not found")
                path = run.directory / "volumes" / name
                path.mkdir(parents=True, exist_ok=True)
                items = ref.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    value = data[item["key"]]
                    raw = base64.b64decode(value) if kind == "secret" else value.encode()
                    (path / item["path"]).write_bytes(raw)
                _chown_tree(path, uid, owner_gid)
            else:
                raise ContainerConfigError(f"volume {name}: only emptyDir, persistentVolumeClaim, secret and "
                                           f"configMap volumes are run")  # fmt: skip
            sources[name] = path
        mounts = []
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in sources:
                raise ContainerConfigError(f"volumeMount {mount['name']!r} names no volume")
            mounts.append({"source": str(sources[mount["name"]]), "path": mount["mountPath"],
                           "read_only": bool(mount.get("readOnly"))})  # fmt: skip
        mounts += self._image_accounts(run)
        if service_account is not None and spec.get("automountServiceAccountToken", True):
            mounts.append({"source": str(service_account), "path": SERVICE_ACCOUNT_DIR, "read_only": True})

        full_env = {**self.image.env, "HOSTNAME": pod["metadata"]["name"]}
        if self.api_server is not None:
            host, port = self.api_server
            full_env |= {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
                         "KUBERNETES_SERVICE_PORT_HTTPS": str(port)}  # fmt: skip
        full_env |= env
        root = self.root_dir / "roots" / run.host
        root.mkdir(parents=True, exist_ok=True)
        launch = {
            "root": str(root),
            "hostname": pod["metadata"]["name"],
            "read_only_root": bool(security.get("readOnlyRootFilesystem")),
            "expose": list(self.image.expose),
            "image_dirs": [{"path": d, "uid": self.image.uid, "gid": self.image.gid} for d in self.image.directories],
            "mounts": mounts,
            "workdir": container.get("workingDir") or self.image.workdir,
            "uid": uid,
            "gid": gid,
            "groups": groups,
            "env": full_env,
            "argv": argv,
        }
        (run.directory / "launch.json").write_text(json.dumps(launch, indent=1))
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind in container:
                probe = container[kind]
                if "exec" in probe:
                    raise ContainerConfigError(f"{kind}: exec probes are not run by this kubelet")
                run.probes[kind] = ProbeState(probe)

    def _image_accounts(self, run: PodRun) -> list[dict[str, Any]]:
        """The image's /etc/passwd and /etc/group: this machine's plus the image's user."""
        image = self.image
        entries = {
            "passwd": f"{image.user_name}:x:{image.uid}:{image.gid}::{image.workdir}:/usr/sbin/nologin\n",
            "group": f"{image.user_name}:x:{image.gid}:\n",
        }
        mounts = []
        for name, entry in entries.items():
            base = Path("/etc", name).read_text()
            path = run.directory / name
            path.write_text(base + ("" if base.endswith("\n") else "\n") + entry)
            path.chmod(0o644)
            mounts.append({"source": str(path), "path": f"/etc/{name}", "read_only": True})
        return mounts

    def _start_container(self, run: PodRun) -> None:
        with open(run.directory / "container.log", "ab") as out:
            out.write(f"--- start {run.restarts} at {time.time():.3f}\n".encode())
            out.flush()
            run.process = self.network.popen(
                run.host, [sys.executable, "-P", "-m", "keychain.testing.podexec", str(run.directory / "launch.json")],
                stdout=out,
            )  # fmt: skip
        now = time.monotonic()
        run.started_at = now
        run.started = "startupProbe" not in run.probes
        run.ready = False
        for kind, state in run.probes.items():
            state.successes = state.failures = 0
            state.next_at = now + float(state.spec.get("initialDelaySeconds", 0))
            if kind == "readinessProbe" and not run.started:
                state.next_at = now
        log.info("pod container started pod=%s host=%s ip=%s restarts=%d", run.key, run.host, run.address,
                 run.restarts)  # fmt: skip

    def _teardown(self, run: PodRun) -> None:
        try:
            grace = float(run.pod["spec"].get("terminationGracePeriodSeconds", 30))
            process = run.process
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
            for relay in run.forwards.values():
                relay.close()
            for channel in run.channels.values():
                channel.close()
            with contextlib.suppress(ValueError):
                self.network.remove_host(run.host)
            root = self.root_dir / "roots" / run.host
            with contextlib.suppress(OSError):
                root.rmdir()
            shutil.rmtree(run.directory / "volumes", ignore_errors=True)
        except Exception:
            log.exception("pod teardown failed pod=%s", run.key)
        finally:
            with self._lock:
                if self.pods.get(run.key) is run:
                    del self.pods[run.key]
            run.stopped.set()

    # ---- the loop: starts, restarts, probes ----

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                runs = [r for r in self.pods.values() if not r.stopping and not r.failure]
            for run in runs:
                try:
                    self._tend(run)
                except Exception:
                    log.exception("kubelet tending failed pod=%s", run.key)

    def _tend(self, run: PodRun) -> None:
        now = time.monotonic()
        if run.process is None or run.process.poll() is not None:
            if run.process is not None:
                run.last_exit = run.process.returncode
                run.process = None
                run.ready = run.started = False
                run.restarts += 1
                backoff = min(BACKOFF_CAP, BACKOFF_START * 2 ** max(0, run.restarts - 1))
                run.next_start = now + backoff
                log.info("pod container exited pod=%s code=%s restart_in=%.1fs", run.key, run.last_exit, backoff)
            if now >= run.next_start and not run.stopping:
                self._start_container(run)
            return
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            state = run.probes.get(kind)
            if state is None or now < state.next_at:
                continue
            if kind != "startupProbe" and not run.started:
                continue
            if kind == "startupProbe" and run.started:
                continue
            state.next_at = now + float(state.spec.get("periodSeconds", 10))
            ok = self._probe(run, state.spec)
            if ok:
                state.successes += 1
                state.failures = 0
            else:
                state.failures += 1
                state.successes = 0
            threshold_ok = state.successes >= int(state.spec.get("successThreshold", 1))
            threshold_bad = state.failures >= int(state.spec.get("failureThreshold", 3))
            if kind == "startupProbe":
                if threshold_ok:
                    run.started = True
                    for other in ("livenessProbe", "readinessProbe"):
                        if other in run.probes:
                            run.probes[other].next_at = now
                elif threshold_bad:
                    self._restart(run, "startup probe failed")
            elif kind == "livenessProbe" and threshold_bad:
                self._restart(run, "liveness probe failed")
            elif kind == "readinessProbe":
                if threshold_ok:
                    run.ready = True
                elif threshold_bad or (not ok and not run.ready):
                    run.ready = False
        if "readinessProbe" not in run.probes:
            run.ready = run.started

    def _restart(self, run: PodRun, why: str) -> None:
        log.info("pod container killed pod=%s reason=%r", run.key, why)
        process = run.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            threading.Thread(target=_reap, args=(process,), daemon=True).start()

    # ---- probes ----

    def _port(self, run: PodRun, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in run.pod["spec"]["containers"][0].get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ContainerConfigError(f"no container port named {port!r}")

    def _probe(self, run: PodRun, spec: Mapping[str, Any]) -> bool:
        timeout = max(float(spec.get("timeoutSeconds", 1)), MIN_PROBE_TIMEOUT)
        try:
            if "httpGet" in spec:
                get = spec["httpGet"]
                return self._http_probe(run, self._port(run, get["port"]), get.get("path", "/"), timeout,
                                        https=get.get("scheme", "HTTP") == "HTTPS")
            if "tcpSocket" in spec:
                self.network.connect(self.node_host, (run.address, self._port(run, spec["tcpSocket"]["port"])),
                                     timeout).close()  # fmt: skip
                return True
            if "grpc" in spec:
                return self._grpc_probe(run, int(spec["grpc"]["port"]), spec["grpc"].get("service", ""), timeout)
        except (OSError, ValueError, grpc.RpcError):
            return False
        return False

    def _http_probe(self, run: PodRun, port: int, path: str, timeout: float, *, https: bool = False) -> bool:
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(self.network.connect(self.node_host, (run.address, port), timeout))
            if https:  # as the kubelet does: TLS without verifying the server's certificate, and none of its own
                context = ssl.create_default_context()
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
                sock = stack.enter_context(context.wrap_socket(sock))
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {run.address}:{port}\r\nUser-Agent: kube-probe\r\n\r\n".encode())
            head = sock.recv(64).decode(errors="replace")
        parts = head.split(" ", 2)
        return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400

    def _grpc_probe(self, run: PodRun, port: int, service: str, timeout: float) -> bool:
        channel = run.channels.get(port)
        if channel is None:
            relay = self.port_forward(run, port)
            run.forwards[port] = relay
            channel = run.channels[port] = grpc.insecure_channel(f"127.0.0.1:{relay.address[1]}")
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                          timeout=timeout)  # fmt: skip
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def port_forward(self, run: PodRun, port: int) -> Relay:
        """A relay on 127.0.0.1 to the pod's port (what `kubectl port-forward` gives)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        target = (run.address, port)
        return Relay(listener, lambda: target, connector(lambda: self.network.socket(self.node_host)),
                     name=f"forward-{run.host}-{port}")  # fmt: skip


def _own_entry(pod: Mapping[str, Any], address: str) -> str:
    """The line the kubelet adds to a pod's /etc/hosts: its IP, its FQDN when it has a subdomain, its hostname."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    hostname = spec.get("hostname") or meta["name"]
    names = [hostname]
    if spec.get("subdomain"):
        fqdn = f"{hostname}.{spec['subdomain']}.{meta['namespace']}.svc"
        names = [f"{fqdn}.cluster.local", fqdn, hostname]
    return f"# the pod itself\n{address} {' '.join(dict.fromkeys(names))}\n"


def _referenced(container: Mapping[str, Any], from_key: str, value_key: str) -> set[str]:
    names = {s[from_key]["name"] for s in container.get("envFrom") or [] if from_key in s}
    names |= {v["valueFrom"][value_key]["name"] for v in container.get("env") or []
              if value_key in (v.get("valueFrom") or {})}  # fmt: skip
    return names


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _reap(process: subprocess.Popen) -> None:
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
