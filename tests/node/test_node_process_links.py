"""Link streams between real `keychain node` processes that break mid-stream: the successor is
killed -9 and restarted on the same address in the same epoch, with writes waiting at the head.
The predecessor must reconnect after its backoff, resend what the successor lacks, and keep each
resent message under the gRPC message limit however much piled up meanwhile."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from node_cluster import NodeCluster, wait_for

from keychain.proto import chain_pb2

pytestmark = pytest.mark.process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin_address(c: NodeCluster, node_id: str) -> None:
    """Restarts of `node_id` come back on the same address, so the configuration stays valid."""
    c.nodes[node_id].extra_args = ["--listen", f"127.0.0.1:{free_port()}"]


def test_a_killed_and_restarted_successor_is_reconnected_and_catches_up(tmp_path: Path) -> None:
    ids = ["n1", "n2", "n3"]
    with NodeCluster(tmp_path, ids) as c, ThreadPoolExecutor(4) as pool:
        pin_address(c, "n2")
        c.start_all()
        c.configure(ids)
        before = [chain_pb2.WriteOp(key=b"before-%d" % i, value=b"x") for i in range(20)]
        assert c.write("n1", before).error.code == chain_pb2.OK

        c.kill("n2")  # the middle node dies; nobody reconfigures the chain
        pending = [pool.submit(c.put, "n1", b"during-%d" % i, b"y%d" % i) for i in range(4)]
        wait_for("the head to see its link fail", lambda: "link down" in c.nodes["n1"].log_text())
        assert not any(f.done() for f in pending)  # no commit without the successor

        c.start("n2")  # same data, same address, same epoch
        replies = [f.result(timeout=15) for f in pending]
        assert [r.results[0].error.code for r in replies] == [chain_pb2.OK] * 4
        head = c.status("n1")
        wait_for("n2 to catch up", lambda: c.status("n2").committed_seq == head.committed_seq)
        assert c.status("n2").epoch == c.epoch  # no reconfiguration was needed
        for i in range(4):
            r = c.read("n3", b"during-%d" % i)
            assert (r.error.code, r.value) == (chain_pb2.OK, b"y%d" % i)


def test_writes_piled_up_behind_a_dead_successor_are_resent_within_the_message_limit(tmp_path: Path) -> None:
    # Six writes of almost 1 MiB each wait at the head while its successor is down. When it is back,
    # the head resends them all at once: as one Batch they would far exceed the 4 MiB message limit
    # and the link could never recover; bounded by bytes they travel in several messages.
    value = b"v" * ((1 << 20) - 1000)
    with NodeCluster(tmp_path, ["n1", "n2"]) as c, ThreadPoolExecutor(6) as pool:
        pin_address(c, "n2")
        c.start_all()
        c.configure(["n1", "n2"])
        assert c.put("n1", b"small", b"1").error.code == chain_pb2.OK  # n2 has made its configuration durable
        c.kill("n2")
        pending = [pool.submit(c.put, "n1", b"big-%d" % i, value) for i in range(6)]
        wait_for("the head to see its link fail", lambda: "link down" in c.nodes["n1"].log_text())

        c.start("n2")
        replies = [f.result(timeout=20) for f in pending]
        assert [r.results[0].error.code for r in replies] == [chain_pb2.OK] * 6
        tail = c.status("n2")
        assert (tail.last_seq, tail.committed_seq, tail.keys) == (7, 7, 7)
        assert c.read("n1", b"big-5").value == value
