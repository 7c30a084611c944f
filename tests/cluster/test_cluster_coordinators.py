"""Three `keychain coordinator` processes on 127.0.0.1: kill -9 of the leader, and a corrupt log.

pytest's rootdir-relative import puts this folder on sys.path, so the harness imports directly.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from cluster_harness import ProcessCluster, wait_for

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]


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


def test_a_corrupt_log_is_reported_at_start_up_and_the_member_refuses_to_start(coordinators):
    c = coordinators
    wait_for("a leader", c.leader, timeout=15)
    wait_for("the --chain to be created", c.chain_view, timeout=10)
    victim = c.names("coordinator")[0]
    c.kill(victim)
    segment = next((c.root / victim / "raft").glob("log-*.seg"))
    blob = bytearray(segment.read_bytes())
    blob[40] ^= 0xFF  # inside the first record, with intact records after it: corruption, not a torn tail
    segment.write_bytes(bytes(blob))

    run = subprocess.run(c.procs[victim].argv, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert "cannot open the Raft log" in run.stderr
    assert str(segment) in run.stderr and "damaged record" in run.stderr
