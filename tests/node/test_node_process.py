"""Three real `keychain node` processes on 127.0.0.1 with real RocksDB, configured by the test."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from node_cluster import NodeCluster, node_command, wait_for

from keychain.proto import chain_pb2

pytestmark = pytest.mark.process

IDS = ["n1", "n2", "n3"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    with NodeCluster(tmp_path_factory.mktemp("chain"), IDS) as cluster:
        cluster.start_all()
        cluster.configure(IDS)
        yield cluster


def op(key: bytes, value: bytes = b"", rid: str = "", delete: bool = False, if_version: int | None = None
       ) -> chain_pb2.WriteOp:
    o = chain_pb2.WriteOp(request_id=rid, key=key, value=value, kind=chain_pb2.DELETE if delete else chain_pb2.PUT)
    if if_version is not None:
        o.if_version = if_version
    return o


def read_all(cluster: NodeCluster, node: str, keys: list[bytes]) -> dict[bytes, tuple[int, bytes, int]]:
    out = {}
    for k in keys:
        r = cluster.read(node, k)
        out[k] = (r.error.code, r.value, r.version)
    return out


def test_writes_through_the_head_read_the_same_from_every_node(chain: NodeCluster) -> None:
    keys = [b"agree-%d" % i for i in range(40)]
    reply = chain.write("n1", [op(k, b"v1-" + k, rid=f"a-{k.decode()}") for k in keys])
    assert reply.error.code == chain_pb2.OK
    assert [r.error.code for r in reply.results] == [chain_pb2.OK] * len(keys)
    first = {k: r.version for k, r in zip(keys, reply.results, strict=True)}

    reply = chain.write("n1", [
        op(keys[0], b"v2", rid="a-update"),
        op(keys[1], delete=True, rid="a-delete"),
        op(keys[2], b"cas-ok", if_version=first[keys[2]], rid="a-cas-ok"),
        op(keys[3], b"cas-bad", if_version=first[keys[3]] + 1000, rid="a-cas-bad"),
    ])
    assert [r.error.code for r in reply.results] == [
        chain_pb2.OK, chain_pb2.OK, chain_pb2.OK, chain_pb2.PRECONDITION_FAILED]

    views = {n: read_all(chain, n, keys) for n in IDS}
    assert views["n1"] == views["n2"] == views["n3"]
    assert views["n1"][keys[0]][:2] == (chain_pb2.OK, b"v2")
    assert views["n1"][keys[1]][0] == chain_pb2.NOT_FOUND
    assert views["n1"][keys[2]][:2] == (chain_pb2.OK, b"cas-ok")
    assert views["n1"][keys[3]] == (chain_pb2.OK, b"v1-" + keys[3], first[keys[3]])

    again = chain.write("n1", [op(keys[5], b"a retry must not apply", rid=f"a-{keys[5].decode()}")])
    assert again.results[0].version == first[keys[5]]  # the original outcome, not a second write
    assert chain.read("n3", keys[5]).value == b"v1-" + keys[5]


def test_writes_are_refused_away_from_the_head(chain: NodeCluster) -> None:
    reply = chain.put("n2", b"not-here", b"x")
    assert reply.error.code == chain_pb2.NOT_HEAD


def test_under_a_read_only_load_every_node_serves_reads(chain: NodeCluster) -> None:
    keys = [b"load-%d" % i for i in range(10)]
    assert chain.write("n1", [op(k, b"x") for k in keys]).error.code == chain_pb2.OK
    before = {n: chain.status(n) for n in IDS}
    for i in range(150):
        node = IDS[i % 3]
        r = chain.read(node, keys[i % len(keys)])
        assert r.error.code == chain_pb2.OK and r.value == b"x"
    after = {n: chain.status(n) for n in IDS}
    served = {n: after[n].reads - before[n].reads for n in IDS}
    assert served == {"n1": 50, "n2": 50, "n3": 50}
    # Clean keys are answered locally: no node asked the tail.
    assert all(after[n].version_queries == before[n].version_queries for n in IDS)


def test_a_message_from_another_epoch_is_rejected(chain: NodeCluster) -> None:
    for stale in (chain.epoch - 1, chain.epoch + 1):
        w = chain.write("n1", [op(b"epoch-key", b"x")], epoch=stale)
        assert (w.error.code, w.error.epoch) == (chain_pb2.WRONG_EPOCH, chain.epoch)
        r = chain.read("n2", b"epoch-key", epoch=stale)
        assert (r.error.code, r.error.epoch) == (chain_pb2.WRONG_EPOCH, chain.epoch)
        q = chain.stub("n3").QueryVersion(chain_pb2.VersionQueryRequest(epoch=stale, keys=[b"k"]), timeout=5)
        assert q.error.code == chain_pb2.WRONG_EPOCH
    assert chain.read("n1", b"epoch-key").error.code == chain_pb2.NOT_FOUND  # nothing was written


def test_a_node_killed_and_restarted_on_its_data_rejoins_and_serves_the_same_data(tmp_path: Path) -> None:
    with NodeCluster(tmp_path, IDS) as c:
        c.start_all()
        c.configure(IDS)
        keys = [b"k%d" % i for i in range(30)]
        assert c.write("n1", [op(k, b"before-" + k) for k in keys]).error.code == chain_pb2.OK

        c.kill("n2")  # kill -9 the middle node
        c.configure(["n1", "n3"])  # the coordinator's job: drop it from the chain
        assert c.write("n1", [op(k, b"during-" + k) for k in keys[:10]]).error.code == chain_pb2.OK

        c.start("n2")  # same data dir; new port
        assert c.status("n2").last_seq >= len(keys)  # its data survived the kill
        c.configure(["n1", "n3"], syncing=["n2"])
        assert c.write("n1", [op(k, b"after-" + k) for k in keys[10:20]]).error.code == chain_pb2.OK
        tail_committed = c.status("n3").committed_seq
        wait_for("n2 to catch up", lambda: c.status("n2").committed_seq >= tail_committed)

        c.configure(["n1", "n3", "n2"])  # promoted: the new tail
        assert c.status("n2").role == "tail"
        expected = read_all(c, "n1", keys)
        wait_for("n2 to serve reads", lambda: c.read("n2", keys[0]).error.code == chain_pb2.OK)
        assert read_all(c, "n2", keys) == read_all(c, "n3", keys) == expected
        assert expected[keys[0]][1] == b"during-k0" and expected[keys[15]][1] == b"after-k15"
        assert expected[keys[25]][1] == b"before-k25"

        reply = c.put("n1", b"new", b"through the new tail")
        assert reply.error.code == chain_pb2.OK
        assert c.read("n2", b"new").value == b"through the new tail"

        assert c.stop("n2") == 0  # SIGTERM: a graceful stop


def test_a_lapsed_lease_refuses_reads_and_writes_and_health_and_metrics_say_so(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    with NodeCluster(tmp_path, ["solo"]) as c:
        c.nodes["solo"].extra_args = ["--metrics-listen", f"127.0.0.1:{metrics_port}"]
        c.start("solo")
        health = health_pb2_grpc.HealthStub(c.nodes["solo"].channel)

        def serving() -> bool:
            request = health_pb2.HealthCheckRequest(service="keychain.chain.ChainNode")
            return health.Check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING

        assert not serving()  # not configured yet
        c.configure(["solo"], lease_ms=400)
        assert c.put("solo", b"k", b"v").error.code == chain_pb2.OK
        wait_for("health to report serving", serving)
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'keychain_node_writes_total{chain="main",node="solo"} 1.0' in metrics
        time.sleep(0.6)
        assert c.put("solo", b"k", b"w").error.code == chain_pb2.LEASE_EXPIRED
        assert c.read("solo", b"k").error.code == chain_pb2.LEASE_EXPIRED
        assert c.read("solo", b"k", consistency=chain_pb2.EVENTUAL).error.code == chain_pb2.LEASE_EXPIRED
        assert not c.status("solo").lease_valid
        wait_for("health to report not serving", lambda: not serving())


def test_a_foreign_data_dir_stops_the_node_at_start_up(tmp_path: Path) -> None:
    with NodeCluster(tmp_path, ["n1"]) as c:
        c.start("n1")
        assert c.stop("n1") == 0
    result = subprocess.run(node_command("n2", tmp_path / "n1"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "belongs to node 'n1' of chain 'main', not to node 'n2'" in result.stderr
    assert "listening" not in result.stdout

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("not a database")
    result = subprocess.run(node_command("n1", tmp_path / "junk"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "holds no KeychainDB store" in result.stderr
