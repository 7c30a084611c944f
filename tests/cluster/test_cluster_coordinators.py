"""Three `keychain coordinator` processes on 127.0.0.1: kill -9 of the leader, and a corrupt log.

pytest's rootdir-relative import puts this folder on sys.path, so the harness imports directly.
"""

from __future__ import annotations

import struct
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from cluster_harness import ProcessCluster, wait_for
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]

# The segment layout of coordinator/storage.py: a 16-byte file header and a 16-byte base index
# block, then records of u32 length + u32 CRC32 + payload.
SEGMENT_HEADER = 32
RECORD_FRAME = struct.Struct("<II")


@pytest.fixture
def coordinators(tmp_path):
    cluster = ProcessCluster(tmp_path, coordinators=3, nodes=0)
    cluster.start_all()
    try:
        yield cluster
    except BaseException:
        print(cluster.log_tails())
        raise
    finally:
        cluster.stop_all()


def test_killing_the_leader_elects_another_and_registry_changes_continue(coordinators):
    c = coordinators
    old = wait_for("a first leader", c.leader, timeout=15)
    wait_for("the --chain to be created", c.chain_view, timeout=10)

    killed_at = time.monotonic()
    c.kill(old)
    new = wait_for("a new leader", lambda: c.leader(exclude=(old,)), timeout=5)
    elected_after = time.monotonic() - killed_at
    assert new != old
    assert elected_after < 3.0, f"re-election took {elected_after:.2f}s"

    survivor = next(n for n in c.names("coordinator") if n not in (old, new))
    code, body = c.http(survivor, "POST", "/v1/chains/after-failover")  # forwarded to the new leader
    assert code == 201, body
    assert body["epoch"] == 1

    c.start(old)  # restarted on its own data, it catches up from the new leader
    def old_member_knows_the_new_chain():
        code, body = c.http_get(old, "/v1/status")
        return code == 200 and "after-failover" in [ch["name"] for ch in body["chains"]]
    wait_for("the restarted member to serve the new chain", old_member_knows_the_new_chain, timeout=10)


def local_gauge(c: ProcessCluster, name: str, metric: str) -> float:
    """A gauge of `name`'s own state, from its /metrics (never forwarded to the leader, unlike
    /v1/status)."""
    with urllib.request.urlopen(f"http://{c.procs[name].http}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == metric:
            return family.samples[0].value
    raise AssertionError(f"{name} exports no {metric}")


def first_record_end(segment: Path) -> int | None:
    """Where the first record of `segment` ends, if the file holds it whole."""
    blob = segment.read_bytes()
    if len(blob) < SEGMENT_HEADER + RECORD_FRAME.size:
        return None
    length, _ = RECORD_FRAME.unpack_from(blob, SEGMENT_HEADER)
    end = SEGMENT_HEADER + RECORD_FRAME.size + length
    return end if end <= len(blob) else None


def test_a_corrupt_log_is_reported_at_start_up_and_the_member_refuses_to_start(coordinators):
    c = coordinators
    wait_for("a leader", c.leader, timeout=15)
    victim = c.names("coordinator")[0]
    # The victim applied the --chain creation itself, so its own log holds records on disk: it
    # applies only entries it has made durable, and the creation comes after the bootstrap entry
    # and the leader's first entry.
    wait_for(f"{victim} to apply the --chain creation",
             lambda: local_gauge(c, victim, "keychain_coordinator_chains") >= 1, timeout=10)
    segments = list((c.root / victim / "raft").glob("log-*.seg"))
    assert len(segments) == 1, f"expected one live segment, found {segments}"
    segment = segments[0]
    c.kill(victim)
    end = first_record_end(segment)
    assert end is not None and end < segment.stat().st_size, (
        f"{segment} ({segment.stat().st_size} bytes) should hold a whole record and more after it")
    blob = bytearray(segment.read_bytes())
    # Inside the first record's payload, with intact records after it: corruption, not a torn tail.
    blob[SEGMENT_HEADER + RECORD_FRAME.size] ^= 0xFF
    segment.write_bytes(bytes(blob))

    run = subprocess.run(c.procs[victim].argv, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert "cannot open the Raft log" in run.stderr
    assert str(segment) in run.stderr and "damaged record" in run.stderr
