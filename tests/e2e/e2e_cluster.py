"""A real local cluster for the end-to-end tests: `keychain up` on a temporary data dir.

`LocalCluster.start(data_dir)` runs `keychain up` as a child process on free ports, waits for its
`ready` line and reads `<data-dir>/cluster.json`; `stop()` sends SIGTERM as Ctrl-C would.
`RecordedClient` wraps the Python client so that every operation lands in a
`keychain.testing.history.Recorder`, for the linearizability checker.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from keychain.client import (
    Client,
)
from keychain.local import busy_ports
from keychain.testing.client_load import (  # noqa: F401  (re-exported for the e2e tests)
    Load,
    RecordedClient,
    VersionedRecorder,
    assert_linearizable,
    lost_writes,
    read_back,
    wait_for,
)
from keychain.testing.history import Recorder

# Set to info or debug to keep the components' logs of a failing run (under its data dir).
LOG_LEVEL = os.environ.get("KEYCHAIN_E2E_LOG_LEVEL", "warning")
READY_TIMEOUT = 90.0  # `keychain up` on 2 busy cores: imports, elections, first write
STOP_TIMEOUT = 40.0
START_ATTEMPTS = 3  # fresh ports again when another process took one before `keychain up` bound it
PORT_SPAN = 210  # base+1.. coordinators, base+81.. their HTTP, base+101.. nodes, base+200.. proxy


def pick_ports(rng: random.Random) -> tuple[int, int]:
    """(base port, proxy HTTP port) such that every port the cluster will use is free now.

    Below Linux's ephemeral range (32768+), where outgoing connections would take them meanwhile.
    """
    for _ in range(200):
        base = rng.randrange(20_000, 32_000 - PORT_SPAN)
        http = base + 200
        wanted = [*range(base + 1, base + 6), *range(base + 81, base + 86), *range(base + 101, base + 106)]
        if not busy_ports([*wanted, http, http + 1]):
            return base, http
    raise RuntimeError("no free block of ports found on 127.0.0.1")


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; it only waits for its parent to collect it.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class PortsTaken(AssertionError):
    """`keychain up` found one of its ports taken."""


@dataclass
class LocalCluster:
    """One running `keychain up`."""

    data_dir: Path
    base_port: int
    http_port: int
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None
    _last_pids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        same_ports: bool = False,
        ready_timeout: float = READY_TIMEOUT,
        extra_args: tuple[str, ...] = (),
    ) -> LocalCluster:
        """Run `keychain up` on `data_dir` and wait for its `ready` line.

        `same_ports`: pass no ports, so `keychain up` reuses those of the previous run on this dir.
        """
        for attempt in range(1, START_ATTEMPTS + 1):
            cluster = cls._launch(data_dir, same_ports, ready_timeout, extra_args)
            try:
                cluster.wait_ready(ready_timeout + 10)
            except PortsTaken:
                cluster.stop()
                if same_ports or attempt == START_ATTEMPTS:
                    raise
                continue
            except BaseException:
                cluster.stop()
                raise
            return cluster
        raise AssertionError("unreachable")

    @classmethod
    def _launch(
        cls, data_dir: Path, same_ports: bool, ready_timeout: float, extra_args: tuple[str, ...]
    ) -> LocalCluster:
        if same_ports:
            layout = json.loads((data_dir / "cluster.json").read_text())["layout"]
            base, http = layout["base_port"], layout["http_port"]
            port_args: list[str] = []
        else:
            base, http = pick_ports(random.Random(os.getpid() ^ time.time_ns()))
            port_args = ["--base-port", str(base), "--http-port", str(http)]
        argv = [
            sys.executable, "-P", "-m", "keychain", "up", "--data-dir", str(data_dir), *port_args,
            "--ready-timeout", str(ready_timeout), "--log-level", LOG_LEVEL, *extra_args,
        ]
        env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, env=env, start_new_session=True,
        )
        cluster = cls(data_dir=data_dir, base_port=base, http_port=http, process=process)
        cluster._reader = threading.Thread(target=cluster._read_output, daemon=True)
        cluster._reader.start()
        return cluster

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))

    def ready_lines(self) -> list[str]:
        return [line for line in self.output if line.startswith("ready")]

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if self.ready_lines():
                return True
            if self.process.poll() is not None:
                self._reader.join(5)  # type: ignore[union-attr]
                if any("ports in use" in line for line in self.output):
                    raise PortsTaken("\n".join(self.output))
                raise AssertionError(f"keychain up exited with {self.process.returncode}:\n{self.report()}")
            return False

        try:
            wait_for("the `ready` line of keychain up", ready, timeout)
        except PortsTaken:
            raise
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.report()}") from None

    # -- what the cluster says about itself -------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cluster_json(self) -> dict[str, Any]:
        doc = json.loads((self.data_dir / "cluster.json").read_text())
        for c in doc.get("components", []):
            if c.get("pid"):
                self._last_pids[c["name"]] = c["pid"]
        return doc

    def component(self, name: str) -> dict[str, Any]:
        for c in self.cluster_json()["components"]:
            if c["name"] == name:
                return c
        raise KeyError(f"no component {name!r} in cluster.json")

    def pid(self, name: str) -> int:
        pid = self.component(name)["pid"]
        assert isinstance(pid, int) and pid > 0, f"{name} has no pid in cluster.json: {pid!r}"
        return pid

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """Signal the component's own process (by the pid in cluster.json); returns that pid."""
        pid = self.pid(name)
        os.kill(pid, sig)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 30.0) -> int:
        """The new pid once cluster.json shows `name` running again under another pid."""

        def restarted() -> int | None:
            pid = self.component(name).get("pid")
            return pid if pid and pid != old_pid and pid_alive(pid) else None

        return wait_for(f"{name} to be restarted (old pid {old_pid})", restarted, timeout)

    def report(self) -> str:
        """What to show when a test fails: the supervisor's output and each log's tail."""
        parts = ["--- keychain up output ---", *self.output[-40:]]
        logs = self.data_dir / "logs"
        if logs.is_dir():
            for log in sorted(logs.glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()[-15:]
                parts += [f"--- {log.name} (last {len(lines)} lines) ---", *lines]
        return "\n".join(parts)

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM `keychain up` (as Ctrl-C) and wait; returns its exit code (None: had to kill it).

        Children that outlive the supervisor (only when it failed) are killed by their pids.
        """
        code: int | None = None
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.cluster_json()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for name, pid in self._last_pids.items():
            if pid_alive(pid) and any("keychain" in part for part in cmdline(pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                code = None if code == 0 else code
                self.output.append(f"(test) killed leftover {name} pid {pid}")
        if self._reader is not None:
            self._reader.join(5)
        return code

    def leftover_pids(self) -> list[int]:
        return [pid for pid in self._last_pids.values() if pid_alive(pid)]


@contextlib.contextmanager
def running_cluster(data_dir: Path, **kwargs: Any) -> Iterator[LocalCluster]:
    cluster = LocalCluster.start(data_dir, **kwargs)
    try:
        yield cluster
    finally:
        cluster.stop()


# -- cluster report helpers -------------------------------------------------------------------


def chain_members(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The members of the (single) chain in a /v1/cluster report."""
    chains = report["chains"]
    assert len(chains) == 1, f"expected one chain, got {chains}"
    return chains[0]["members"]


def member(report: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    return next((m for m in chain_members(report) if m["id"] == node_id), None)


def active_members(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in chain_members(report) if m["role"] in ("head", "middle", "tail")]


def wait_active(client: Client, count: int = 3, timeout: float = 30.0) -> dict[str, Any]:
    """The /v1/cluster report once `count` chain members are active (the nodes join one by one)."""

    def report() -> dict[str, Any] | None:
        got = client.cluster()
        return got if len(active_members(got)) == count else None

    return wait_for(f"{count} active chain members", report, timeout)


class RecordedHTTP:
    """Raw HTTP requests on /v1/kv/{key}, recorded like RecordedClient's (to check headers and codes).

    A 2xx is `ok` (a 404 read is an ok read of nothing), a 5xx or no answer is `unknown` for a
    write, any other answer is `fail`: the API promises a 4xx changes nothing.
    """

    def __init__(self, url: str, recorder: Recorder, name: str) -> None:
        self.recorder = recorder
        self.name = name
        self.http = httpx.Client(base_url=url, timeout=10)

    def request(
        self, method: str, key: str, content: bytes | None = None, **kwargs: Any
    ) -> httpx.Response:
        op = {"PUT": "put", "GET": "get", "DELETE": "delete"}[method]
        value = content.decode(errors="replace") if op == "put" and content is not None else None
        call = self.recorder.invoke(self.name, op, key, value, at=time.monotonic())  # type: ignore[arg-type]
        try:
            response = self.http.request(method, "/v1/kv/" + key, content=content, **kwargs)
        except BaseException:
            (self.recorder.unknown(call) if op != "get" else self.recorder.fail(call, at=time.monotonic()))
            raise
        now = time.monotonic()
        status = response.status_code
        if op == "get" and status in (200, 404):
            self.recorder.ok(call, at=now, output=response.content.decode() if status == 200 else None)
        elif 200 <= status < 300:
            self.recorder.ok(call, at=now)
        elif status >= 500 and op != "get":
            self.recorder.unknown(call)
        else:
            self.recorder.fail(call, at=now)
        etag = response.headers.get("etag", "").strip('"')
        if status == 200 and etag.isdigit() and isinstance(self.recorder, VersionedRecorder):
            self.recorder.note_version(call, int(etag))
        return response

    def put(self, key: str, content: bytes, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", key, content, **kwargs)

    def get(self, key: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", key, **kwargs)

    def delete(self, key: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", key, **kwargs)

    def close(self) -> None:
        self.http.close()
