"""A full disk is an alarm, not a crash, between real processes: three nodes whose data directories
share one small tmpfs volume, written through the proxy until it fills.

Nothing acknowledged is lost, reads are served throughout, writes get 507 naming a node while the
disk is full, and once space is back writes resume by themselves, with every node process the one
that started: first by deleting keys (deletes are accepted while the disk is full; the deletes are
garbage-collected and the store compacted), then, filled again, by removing a filler file.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from cluster_harness import wait_for
from full_disk_harness import FullDiskCluster, can_mount, full_disk_cluster, write_until_refused

pytestmark = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs volume needs root on Linux")


class Reader:
    """Reads one key through the proxy in a loop, counting what is not its value, and notes every
    storage alarm /v1/cluster shows meanwhile (compaction may clear one within a second)."""

    def __init__(self, fd: FullDiskCluster, key: str, value: bytes) -> None:
        self.fd, self.key, self.value = fd, key, value
        self.reads, self.failures = 0, []
        self.alarms_seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.reads < 5000:
            status, body = self.fd.proxy.request("GET", f"/v1/kv/{self.key}", timeout=3)
            self.reads += 1
            if status != 200 or body != self.value:
                self.failures.append((status, body[:200]))
            self.alarms_seen.update(self.fd.proxy.cluster()["chains"][0]["storage_alarms"])
            time.sleep(0.02)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_full_volume_refuses_writes_with_507_serves_reads_and_resumes_when_space_is_back(tmp_path: Path):
    with full_disk_cluster(tmp_path) as fd:
        acked: dict[str, bytes] = {}
        assert fd.proxy.put("steady", b"readable throughout", "w-steady")[0] == 200
        with Reader(fd, "steady", b"readable throughout") as reader:
            status, refusal, refused = write_until_refused(fd, acked)
            assert (status, refusal.get("error")) == (507, "insufficient_storage"), refusal
            assert any(f"node-{i}" in refusal["message"] for i in (1, 2, 3)), refusal
            assert fd.proxy.request("GET", f"/v1/kv/{refused}")[0] == 404, "nothing of a refused write is applied"

            for key in list(acked):  # deletes are served while the disk is full, and free space
                assert fd.proxy.request("DELETE", f"/v1/kv/{key}")[0] == 200
                del acked[key]
            wait_for("writes accepted after deletes", lambda: fd.proxy.put("deleted", b"x", "w-deleted")[0] == 200,
                     timeout=15, interval=0.1)

            status, refusal, _ = write_until_refused(fd, acked)  # full again; this time the volume grows
            assert status == 507, refusal
            fd.free_space()
            wait_for("writes accepted again", lambda: fd.proxy.put("after", b"space is back", "w-after")[0] == 200,
                     timeout=15, interval=0.1)
            wait_for("the alarm cleared", lambda: not fd.proxy.cluster()["chains"][0]["storage_alarms"], timeout=5)
        assert reader.reads > 0 and reader.failures == [], reader.failures[:5]
        assert reader.alarms_seen, "/v1/cluster showed the storage alarm"
        for key, value in acked.items():
            assert fd.proxy.request("GET", f"/v1/kv/{key}")[1] == value, f"acknowledged {key} lost"
        assert fd.same_processes(), "a node exited or restarted"
