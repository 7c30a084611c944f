"""Three chain nodes whose data directories share one small tmpfs volume, and a proxy in front: the
full-disk scenario of the process test and of `bench/full_disk.py`.

`small_volume` mounts the tmpfs (root only) and always unmounts it, killing nothing: the cluster is
stopped first by `running_cluster`. A filler file takes most of the volume so that a few writes fill
the rest; removing it is "space is back".
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cluster_harness import ProcessCluster, free_ports, running_cluster, wait_for

MiB = 1 << 20
VOLUME_BYTES = 96 * MiB
FILLER_BYTES = 56 * MiB
HIGH_WATER = "12MiB"  # alarm below 12 MiB free, cleared from 15 MiB
VALUE_BYTES = 32 * 1024


@contextlib.contextmanager
def small_volume(where: Path, size: int = VOLUME_BYTES) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `where`, unmounted afterwards (lazily if still busy)."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True,
                   capture_output=True)
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def can_mount() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0


@dataclass
class Proxy:
    url: str
    process: subprocess.Popen[bytes]

    def request(self, method: str, path: str, body: bytes | None = None, timeout: float = 5.0
                ) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def put(self, key: str, value: bytes, idempotency_key: str) -> tuple[int, dict]:
        req = urllib.request.Request(f"{self.url}/v1/kv/{key}", data=value, method="PUT",
                                     headers={"Idempotency-Key": idempotency_key})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def cluster(self) -> dict:
        status, body = self.request("GET", "/v1/cluster")
        assert status == 200, body
        return json.loads(body)


@dataclass
class FullDiskCluster:
    cluster: ProcessCluster
    proxy: Proxy
    volume: Path
    filler: Path
    pids: dict[str, int] = field(default_factory=dict)

    def fill(self) -> None:
        """Take most of the volume with one file."""
        with open(self.filler, "wb") as f:
            chunk = b"\0" * MiB
            for _ in range(FILLER_BYTES // MiB):
                f.write(chunk)

    def free_space(self) -> None:
        self.filler.unlink()

    def free_bytes(self) -> int:
        st = os.statvfs(self.volume)
        return st.f_bavail * st.f_frsize

    def same_processes(self) -> bool:
        """No node process exited or was restarted."""
        return all(self.cluster.procs[n].alive and self.cluster.procs[n].process.pid == pid  # type: ignore[union-attr]
                   for n, pid in self.pids.items())


@contextlib.contextmanager
def full_disk_cluster(root: Path) -> Iterator[FullDiskCluster]:
    """The cluster running, its nodes' data on one small tmpfs (with the filler in place)."""
    volume = root / "volume"
    with small_volume(volume), running_cluster(root, log_level="warning", node_data=volume,
                                               node_args=("--disk-high-water", HIGH_WATER)) as cluster:
        http, grpc_port = free_ports(2)
        log = open(root / "logs" / "proxy.log", "ab")  # noqa: SIM115 - closed below
        proxy_proc = subprocess.Popen(
            [*cluster.python, "proxy", "--listen", f"127.0.0.1:{http}", "--grpc", f"127.0.0.1:{grpc_port}",
             "--coordinator", cluster.coordinator_list, "--chain", cluster.chain, "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONSAFEPATH": "1"}, start_new_session=True)
        proxy = Proxy(f"http://127.0.0.1:{http}", proxy_proc)
        try:
            wait_for("the proxy ready", lambda: proxy.request("GET", "/readyz", timeout=1)[0] == 200, timeout=20)
            fd = FullDiskCluster(cluster, proxy, volume, volume / "filler")
            fd.pids = {n: cluster.procs[n].process.pid for n in cluster.names("node")}  # type: ignore[union-attr]
            fd.fill()
            yield fd
        finally:
            proxy_proc.terminate()
            try:
                proxy_proc.wait(5)
            except subprocess.TimeoutExpired:
                proxy_proc.kill()
                proxy_proc.wait()
            log.close()


def write_until_refused(fd: FullDiskCluster, acked: dict[str, bytes], limit: int = 2000,
                        seconds: float = 20.0) -> tuple[int, dict, str]:
    """Write fresh keys through the proxy until one is refused with anything but 200; returns that
    answer and the key refused. Acknowledged writes are recorded in `acked`."""
    deadline = time.monotonic() + seconds
    run = os.urandom(4).hex()  # fresh keys and idempotency keys in every call
    for i in range(limit):
        if time.monotonic() > deadline:
            break
        key = f"fill-{run}-{i}"
        value = os.urandom(VALUE_BYTES // 2).hex().encode()
        status, body = fd.proxy.put(key, value, f"w-{key}")
        if status == 200:
            acked[key] = value
            continue
        return status, body, key
    raise AssertionError(f"the volume never filled: {len(acked)} writes acknowledged, {fd.free_bytes()} bytes free")
