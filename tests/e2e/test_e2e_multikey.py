"""End to end through `keychain up`: range reads, transactions and watches, with kill -9 of a node.

One cluster serves the module. Every client operation is recorded and the history (ranges,
transactions, watch streams) is checked by keychain.testing.checker against a model of the
whole key space; the key set is kept small (a handful of keys) so the multi-key search stays
cheap.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from e2e_cluster import (
    LocalCluster,
    RecordedClient,
    VersionedRecorder,
    active_members,
    assert_linearizable,
    running_cluster,
    wait_active,
)

from keychain.client import KeychainError
from keychain.proto import chain_pb2, chain_pb2_grpc
from keychain.testing.history import Compare, TxnOp, WatchEvent

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]

LOAD_SECONDS = 6.0  # of transactions, ranges and watches; the node is killed a third of the way in
MAX_TXNS = 150  # per transaction client: bounds the history the checker searches
PACE = 0.04  # seconds between one client's transactions, so they span the whole load


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("e2e-multikey") / "data") as running:
        yield running


def test_every_node_serves_a_range_at_one_snapshot(cluster: LocalCluster) -> None:
    with cluster.client() as kc:
        report = wait_active(kc)
        result = kc.txn(success=[{"op": "put", "key": f"snap/{k}", "value": k} for k in "abc"])
        snapshots = set()
        for node in active_members(report):
            with grpc.insecure_channel(node["address"]) as channel:
                reply = chain_pb2_grpc.ChainNodeStub(channel).Range(
                    chain_pb2.RangeRequest(epoch=report["chains"][0]["epoch"], start=b"snap/", end=b"snap0",
                                           limit=10, snapshot=result.version),
                    timeout=5,
                )
            assert reply.error.code == chain_pb2.Code.OK, reply.error
            assert [(i.key, i.value, i.version) for i in reply.items] == [
                (f"snap/{k}".encode(), k.encode(), result.version) for k in "abc"
            ]
            snapshots.add(reply.snapshot)
        assert snapshots == {result.version}


def test_transactions_ranges_and_watches_survive_kill_9_of_a_node(cluster: LocalCluster, tmp_path: Path) -> None:
    recorder = VersionedRecorder()
    options = {"timeout": 5.0, **cluster.client_options()}
    keys = ["mk/a", "mk/b"]
    setup = RecordedClient(cluster.url, recorder, "setup", **options)
    for key in keys:
        setup.put(key, f"setup-{key}")
    start_version = setup.client.range(prefix="mk/").version
    stop = threading.Event()
    errors: list[str] = []

    def transfers(name: str, seed: int) -> None:
        """Compare-and-swap both keys at once from what a range read showed."""
        client = RecordedClient(cluster.url, recorder, name, **options)
        rng = random.Random(seed)
        try:
            for n in range(MAX_TXNS):
                if stop.is_set():
                    return
                try:
                    seen = dict(client.range("mk/a", "mk/c"))
                    compare = [Compare(k, seen.get(k)) for k in keys]
                    rng.shuffle(compare)
                    client.txn(compare, [TxnOp("put", k, f"{name}-{n}-{k}") for k in keys],
                               [TxnOp("get", keys[0])])
                    time.sleep(PACE)
                except KeychainError as exc:
                    errors.append(f"{name}: {exc}")
                    time.sleep(0.05)
        finally:
            client.close()

    def watcher(name: str) -> None:
        client = RecordedClient(cluster.url, recorder, name, **options)
        try:
            client.watch("mk/", start_version, until=lambda e: e.key == "mk/end")
        except KeychainError as exc:
            errors.append(f"{name}: {exc}")
        finally:
            client.close()

    # Three watchers: the proxy spreads open watches over the members, so the kill cuts one.
    watchers = [threading.Thread(target=watcher, args=(f"w{i}",), daemon=True) for i in range(3)]
    for thread in watchers:
        thread.start()
    time.sleep(1.0)  # every watch open before the transactions start
    writers = [threading.Thread(target=transfers, args=(f"t{i}", i), daemon=True) for i in range(2)]
    for thread in writers:
        thread.start()
    threads = writers + watchers
    with cluster.client() as admin:
        victim = next(m["id"] for m in active_members(wait_active(admin)) if m["role"] == "tail")
        time.sleep(LOAD_SECONDS / 3)
        old_pid = cluster.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        cluster.wait_restarted(victim, old_pid)
        time.sleep(LOAD_SECONDS * 2 / 3)
        stop.set()
        for thread in writers:
            thread.join(30)
        setup.put("mk/end", "end")  # the watchers stop at it
        for thread in watchers:
            thread.join(30)
        moved = httpx.get(f"{cluster.url}/metrics").text
    setup.close()
    assert not any(thread.is_alive() for thread in threads), "a client did not finish"
    history = recorder.history()
    txns = [op for op in history if op.op == "txn" and op.status == "ok"]
    watched = [op.events for op in history if op.op == "watch"]
    assert sum(1 for op in txns if op.succeeded and op.start > killed_at + 1) >= 5, (len(txns), errors[:5])
    assert all(w and w[-1] == WatchEvent(w[-1].version, "put", "mk/end", "end") for w in watched), errors[:5]
    assert 'keychain_proxy_retries_total{op="watch"' in moved, "a watch was served by the killed node and moved"
    assert_linearizable(recorder, tmp_path / "history.jsonl")
