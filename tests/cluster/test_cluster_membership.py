"""Growing and shrinking the coordinator cluster of real processes while a chain keeps serving.

Three `keychain coordinator` processes and three chain nodes on 127.0.0.1, writes flowing to the
head the whole time. Two more coordinators start with `--join` and are added through the admin API
(learner, caught up, voter), then the cluster shrinks back to three by removing its leader (which
hands leadership over first) and one of the new members. After every step a registry change
commits; the chain's writes are never interrupted for long, and none fails for good.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from cluster_harness import ChainLoad, Proc, ProcessCluster, free_ports, wait_for

pytestmark = [pytest.mark.process, pytest.mark.timeout(150)]

MAX_WRITE_GAP = 1.0  # seconds without an acknowledged write that would count as an interruption


def request(cluster: ProcessCluster, member: str, method: str, path: str, body: Any = None,
            timeout: float = 30.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{cluster.procs[member].http}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def add_joiner(cluster: ProcessCluster, name: str) -> Proc:
    grpc_port, http_port = free_ports(2)
    address, http = f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}"
    join = ",".join(cluster.procs[n].address for n in ("coord-1", "coord-2", "coord-3"))
    proc = Proc(name, "coordinator", address, [
        *cluster.python, "coordinator", "--id", name, "--listen", address, "--http", http,
        "--data-dir", str(cluster.root / name), "--join", join, "--log-level", cluster.log_level,
    ], cluster.root / "logs" / f"{name}.log", http=http)
    cluster.procs[name] = proc
    cluster.start(name)
    return proc


def voters(cluster: ProcessCluster) -> dict[str, str] | None:
    st = cluster.status()
    return {m["id"]: m["suffrage"] for m in st["members"]} if st else None


@pytest.fixture
def cluster(tmp_path):
    c = ProcessCluster(tmp_path, coordinators=3, nodes=3)
    c.start_all()
    try:
        yield c
    except BaseException:
        print(c.log_tails())
        raise
    finally:
        c.stop_all()


def test_grow_to_five_coordinators_and_back_to_three_while_the_chain_serves(cluster):
    c = cluster
    def three_active() -> bool:
        return sorted(c.roles().values()) == ["head", "middle", "tail"]
    wait_for("three active chain members", three_active, timeout=30)
    writer = ChainLoad(c, reads=False, write_pause=0.01)
    writer.start()
    try:
        wait_for("writes to flow", lambda: len(writer.acked) > 10, timeout=10)

        for n, name in enumerate(("coord-4", "coord-5"), start=1):
            proc = add_joiner(c, name)
            asked = f"coord-{n}"  # any member: a follower forwards to the leader
            code, body = request(c, asked, "POST", "/v1/members", {"id": name, "address": proc.address})
            assert code == 201, body
            assert {m["id"]: m["suffrage"] for m in body["members"]}[name] == "voter"
            code, body = request(c, name, "POST", f"/v1/chains/grown-{n}")  # served through the new member
            assert code == 201, body
        assert voters(c) == {f"coord-{i}": "voter" for i in range(1, 6)}

        leader = wait_for("a leader", c.leader, timeout=5)
        asked = next(n for n in c.names("coordinator") if n != leader)
        code, body = request(c, asked, "DELETE", f"/v1/members/{leader}")
        assert code == 200, body
        new_leader = wait_for("a new leader", lambda: c.leader(exclude=(leader,)), timeout=5)
        assert new_leader != leader
        c.kill(leader)
        second = "coord-5" if leader != "coord-5" else "coord-4"
        code, body = request(c, new_leader, "DELETE", f"/v1/members/{second}")
        assert code == 200, body
        c.kill(second)
        remaining = sorted(set(c.names("coordinator")) - {leader, second})
        assert sorted(voters(c) or {}) == remaining

        code, body = request(c, remaining[0], "POST", "/v1/chains/shrunk")
        assert code == 201, body
        acked_before = len(writer.acked)
        wait_for("writes to keep flowing", lambda: len(writer.acked) > acked_before + 10, timeout=10)
        # The nodes still heartbeat the shrunk cluster: every member healthy, nobody removed.
        chain = wait_for("a healthy chain", lambda: (v := c.chain_view()) and all(m["healthy"] for m in v["members"])
                         and v, timeout=5)
        assert len(chain["members"]) == 3
    finally:
        writer.finish(10)
    assert writer.longest_gap() < MAX_WRITE_GAP, f"chain writes stalled for {writer.longest_gap():.2f}s"
