"""A full disk is an alarm, not a crash: scenarios on a chain of pure cores.

The head refuses new writes, naming the full member, before it sequences them; deletes and reads are
still served; a Ready the disk has no room for is held by the node driver, nothing of it half-applied,
and written once space is back; the alarm's decision itself (high-water mark, hysteresis) is pure.
"""

from __future__ import annotations

import pytest
from chain_harness import Chain, NodeShell, config_of
from keychain.node.disk_alarm import DiskAlarm, DiskSample, HighWater
from keychain.node.driver import StorageFull
from keychain.node.messages import (
    Code,
    Compare,
    Consistency,
    NodeStatus,
    OpKind,
    Txn,
    TxnOp,
    TxnOpKind,
    WriteOp,
)
from keychain.node.metrics import NodeMetrics
from keychain.node.versions import MemoryVersionStore, Record
from prometheus_client import generate_latest

MiB = 1 << 20


class FillingShell(NodeShell):
    """A node's storage whose disk can fill up: while `full`, `apply` writes nothing and raises."""

    full = False

    def apply(self, records: list[Record]) -> None:
        if self.full:
            raise StorageFull("no space left on device")
        super().apply(records)


class DiskChain(Chain):
    """The scenario chain, with a disk that can fill on any node."""

    def _driver(self, node_id: str, store: MemoryVersionStore):  # type: ignore[no-untyped-def]
        driver = super()._driver(node_id, store)
        shell = FillingShell(self, node_id, store)
        driver.storage = driver.transport = shell
        return driver

    def disk(self, node_id: str) -> FillingShell:
        return self.driver(node_id).storage  # type: ignore[return-value]

    def process(self, node_id: str) -> list[str]:
        try:
            return super().process(node_id)
        except StorageFull:
            return []  # the driver holds the Ready; the next step tries it again


def three_nodes() -> DiskChain:
    chain = DiskChain()
    for n in ("n1", "n2", "n3"):
        chain.add(n)
    chain.configure(config_of("c", 1, ["n1", "n2", "n3"]), ["n1", "n2", "n3"], None)
    chain.stabilize()
    return chain


def put(key: bytes, value: bytes, rid: str) -> WriteOp:
    return WriteOp(rid, key, OpKind.PUT, value)


def test_a_full_member_makes_the_head_refuse_puts_naming_it_and_nothing_is_sequenced():
    chain = three_nodes()
    chain.write("n1", [put(b"k", b"v1", "w1")])
    chain.stabilize()
    before = chain.core("n1").last_seq

    chain.core("n1").set_storage_alarms({"n3"})
    _, refused = chain.write("n1", [put(b"k", b"v2", "w2"), put(b"other", b"x", "w3")])
    assert refused is not None
    assert [r.error.code for r in refused.results] == [Code.INSUFFICIENT_STORAGE] * 2
    assert "n3" in refused.results[0].error.message and "n2" not in refused.results[0].error.message
    assert chain.core("n1").last_seq == before  # refused before sequencing: nothing to replicate
    assert chain.core("n1").status(0).storage_alarms == ("n3",)

    # A retry of a write already decided still gets its outcome; deletes free space and are accepted.
    _, retried = chain.write("n1", [put(b"k", b"v1", "w1")])
    assert retried is not None and retried.results[0].error.code == Code.OK
    ticket, pending = chain.write("n1", [WriteOp("d1", b"k", OpKind.DELETE)])
    assert pending is None
    chain.stabilize()
    assert chain.replies[ticket].results[0].error.code == Code.OK
    _, read = chain.read("n2", b"k")
    assert read is not None and read.error.code == Code.NOT_FOUND

    chain.core("n1").set_storage_alarms(set())  # space is back: writes resume, no restart
    ticket, _ = chain.write("n1", [put(b"k", b"v3", "w4")])
    chain.stabilize()
    assert chain.replies[ticket].results[0].error.code == Code.OK
    _, read = chain.read("n3", b"k")
    assert read is not None and read.value == b"v3"


def txn(rid: str, success: tuple[TxnOp, ...], failure: tuple[TxnOp, ...] = ()) -> WriteOp:
    """A transaction whose compare fails unless `k` is absent."""
    return WriteOp(rid, b"", OpKind.TXN, txn=Txn((Compare(b"k"),), success, failure))


def test_a_full_member_makes_the_head_refuse_a_transaction_that_could_put_but_not_one_that_only_deletes():
    chain = three_nodes()
    chain.write("n1", [put(b"k", b"v1", "w1")])
    chain.stabilize()
    before = chain.core("n1").last_seq
    chain.core("n1").set_storage_alarms({"n2"})

    # The compare fails (k exists), so only the failure branch's delete would run: refused all the same,
    # since the head refuses before it reads the compares.
    could_put = txn("t1", (TxnOp(TxnOpKind.PUT, b"a", b"x"),), (TxnOp(TxnOpKind.DELETE, b"k"),))
    _, refused = chain.write("n1", [could_put])
    assert refused is not None and refused.results[0].error.code == Code.INSUFFICIENT_STORAGE
    assert "n2" in refused.results[0].error.message
    assert chain.core("n1").last_seq == before, "nothing sequenced"

    deletes = txn("t2", (TxnOp(TxnOpKind.DELETE, b"a"),), (TxnOp(TxnOpKind.DELETE, b"k"), TxnOp(TxnOpKind.GET, b"k")))
    reads = txn("t3", (TxnOp(TxnOpKind.GET, b"a"),), (TxnOp(TxnOpKind.GET, b"k"),))
    ticket, _ = chain.write("n1", [reads, deletes])
    chain.stabilize()
    assert [r.error.code for r in chain.replies[ticket].results] == [Code.OK, Code.OK]
    _, read = chain.read("n3", b"k")
    assert read is not None and read.error.code == Code.NOT_FOUND, "the delete-only transaction ran"


def test_an_alarm_of_a_node_no_longer_in_the_chain_refuses_nothing():
    chain = three_nodes()
    chain.core("n1").set_storage_alarms({"gone"})
    ticket, reply = chain.write("n1", [put(b"k", b"v", "w1")])
    assert reply is None
    chain.stabilize()
    assert chain.replies[ticket].results[0].error.code == Code.OK


def test_a_ready_the_disk_cannot_take_is_held_and_written_once_space_is_back():
    chain = three_nodes()
    chain.write("n1", [put(b"old", b"v0", "w0")])
    chain.stabilize()
    middle = chain.nodes["n2"].store
    chain.disk("n2").full = True

    ticket, reply = chain.write("n1", [put(b"k", b"v1", "w1")])
    assert reply is None
    chain.stabilize()
    # The middle persisted nothing of the Ready it holds, forwarded nothing, and the write is not
    # acknowledged; the node is up and serves what it had committed.
    assert middle.state().last_seq == 1 and chain.driver("n2").held is not None
    assert chain.nodes["n3"].store.state().last_seq == 1
    assert ticket not in chain.replies
    _, read = chain.read("n2", b"old")
    assert read is not None and read.value == b"v0"
    _, eventual = chain.read("n2", b"old", Consistency.EVENTUAL)
    assert eventual is not None and eventual.value == b"v0"
    # It keeps taking input meanwhile: a second write waits behind the held Ready.
    second, _ = chain.write("n1", [put(b"k2", b"v2", "w2")])
    chain.stabilize()
    assert second not in chain.replies

    chain.disk("n2").full = False
    chain.stabilize()
    assert chain.replies[ticket].results[0].error.code == Code.OK
    assert chain.replies[second].results[0].error.code == Code.OK
    for n in ("n1", "n2", "n3"):
        assert chain.nodes[n].store.state().committed_seq == 3
        assert chain.nodes[n].store.clean(b"k").value == b"v1"  # type: ignore[union-attr]


def test_the_alarm_is_raised_below_the_mark_and_clears_only_a_quarter_above_it():
    alarm = DiskAlarm(HighWater.parse("10MiB"))
    total = 1000 * MiB
    assert not alarm.observe(DiskSample(11 * MiB, total))
    assert alarm.observe(DiskSample(9 * MiB, total))
    assert alarm.observe(DiskSample(12 * MiB, total))  # above the mark, within the hysteresis
    assert not alarm.observe(DiskSample(13 * MiB, total))  # 12.5 MiB and more: cleared


def test_the_high_water_mark_is_bytes_a_percentage_or_the_larger_of_both():
    assert HighWater.parse("256MiB").mark(10_000 * MiB) == 256 * MiB
    assert HighWater.parse("5%").mark(1000 * MiB) == 50 * MiB
    both = HighWater.parse("2%,256MiB")
    assert both.mark(1000 * MiB) == 256 * MiB and both.mark(100_000 * MiB) == 2000 * MiB
    for bad in ("", "lots", "5 parsecs", "100%"):
        with pytest.raises(ValueError):
            HighWater.parse(bad)


def test_a_ready_is_written_only_while_it_leaves_the_reserve_free():
    alarm = DiskAlarm(HighWater.parse("64MiB"))  # reserve: an eighth, 8 MiB
    alarm.observe(DiskSample(10 * MiB, 1000 * MiB))
    assert alarm.may_persist(1 * MiB)
    assert not alarm.may_persist(3 * MiB)


def test_the_node_metrics_show_its_alarm_the_chains_and_its_free_space():
    status = NodeStatus("n2", "c", storage_alarm=True, disk_free_bytes=5 * MiB, storage_alarms=("n2", "n3"))
    metrics = NodeMetrics(lambda: status, lambda: 0)
    text = generate_latest(metrics.registry).decode()
    assert 'keychain_node_storage_alarm{chain="c",node="n2"} 1.0' in text
    assert 'keychain_node_chain_storage_alarms{chain="c",node="n2"} 2.0' in text
    assert 'keychain_node_disk_free_bytes{chain="c",node="n2"} 5.24288e+06' in text


class _CountingStore:
    """The store under a node's `_RoomyStore`: counts what it is given."""

    wedged = False

    def __init__(self) -> None:
        self.applied: list[list[Record]] = []

    def apply(self, records: list[Record]) -> None:
        self.applied.append(records)


def test_a_ready_far_from_a_full_disk_goes_on_the_watchers_recent_sample_and_near_it_on_a_fresh_one():
    from keychain.node.messages import Entry, EntryKind
    from keychain.node.server import DISK_SAMPLE_TRUSTED_FOR, _RoomyStore
    from keychain.node.versions import AppendEntries

    now = [0.0]
    volume = [DiskSample(900 * MiB, 1000 * MiB)]
    taken = []

    def sample() -> DiskSample:
        taken.append(now[0])
        return volume[0]

    store = _CountingStore()
    roomy = _RoomyStore(store, DiskAlarm(HighWater.parse("64MiB")), sample, lambda: now[0])  # type: ignore[arg-type]
    ready = [AppendEntries((Entry(1, "r1", b"k", EntryKind.PUT, b"v" * 100),))]
    roomy.observed(sample())  # the watcher's sample
    taken.clear()
    for _ in range(100):
        roomy.apply(ready)
    assert taken == [], "ample room on a recent sample: no statvfs per Ready"

    now[0] += DISK_SAMPLE_TRUSTED_FOR + 0.01
    roomy.apply(ready)
    assert taken == [now[0]], "an old sample is not trusted"

    volume[0] = DiskSample(100 * MiB, 1000 * MiB)  # under twice the mark above the reserve: too close
    roomy.observed(sample())
    taken.clear()
    roomy.apply(ready)
    roomy.apply(ready)
    assert len(taken) == 2, "close to the mark, every Ready is checked on a fresh sample"

    volume[0] = DiskSample(1 * MiB, 1000 * MiB)  # the disk filled between two samples
    with pytest.raises(StorageFull):
        roomy.apply(ready)
    assert len(store.applied) == 103, "the refused Ready wrote nothing"
