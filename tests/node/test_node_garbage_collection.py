"""Deletes really free space: a tombstone is collected once every member of the chain has committed it
(the chain's clean point, which the coordinator relays) and the range history no longer keeps what it
superseded (the horizon, `retain_versions` behind the commit point), and a state transfer does not
bring a collected key back on a node that held it before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chain_harness import Chain, config_of
from keychain.node.core import CoreOptions
from keychain.node.messages import Code, Entry, EntryKind, KeyVersion, OpKind, RangeRead, RangeReply, WriteOp
from keychain.node.storage import RocksVersionStore
from keychain.node.versions import (
    AppendEntries,
    CollectGarbage,
    Commit,
    InstallKeys,
    MemoryVersionStore,
    VersionStore,
)


def put(key: bytes, value: bytes, rid: str) -> WriteOp:
    return WriteOp(rid, key, OpKind.PUT, value)


def delete(key: bytes, rid: str) -> WriteOp:
    return WriteOp(rid, key, OpKind.DELETE)


def clean_point(chain: Chain, nodes: list[str]) -> None:
    """What the coordinator relays: the lowest commit point of the members."""
    point = min(chain.core(n).committed_seq for n in nodes)
    for n in nodes:
        chain.core(n).set_chain_clean_point(point)


def page_at(chain: Chain, node: str, snapshot: int) -> RangeReply:
    """A strong range over the whole key space at `snapshot`, answered at `node`."""
    ticket, reply = chain.range(node, RangeRead(b"", snapshot=snapshot))
    chain.stabilize()
    reply = reply or chain.replies.pop(ticket)
    assert isinstance(reply, RangeReply)
    return reply


def test_a_delete_is_collected_only_once_every_member_has_committed_it_and_no_snapshot_needs_it():
    chain = Chain(options=CoreOptions(retain_versions=2))
    for n in ("n1", "n2", "n3"):
        chain.add(n)
    chain.configure(config_of("c", 1, ["n1", "n2", "n3"]), ["n1", "n2", "n3"], None)
    chain.write("n1", [put(b"gone", b"v", "w1"), put(b"kept", b"v", "w2")])
    chain.stabilize()
    chain.write("n1", [delete(b"gone", "d1")])
    chain.stabilize()
    assert all(chain.nodes[n].store.clean(b"gone").tombstone for n in ("n1", "n2", "n3"))  # type: ignore[union-attr]

    # Committed everywhere, but no clean point known yet: nothing is collected.
    chain.core("n3").set_chain_clean_point(0)
    chain.stabilize()
    assert chain.nodes["n3"].store.clean(b"gone") is not None

    # Every member committed it (seq 3), but snapshots down to 1 are still readable: kept.
    clean_point(chain, ["n1", "n2", "n3"])
    chain.stabilize()
    assert chain.nodes["n2"].store.clean(b"gone") is not None

    chain.write("n1", [put(b"x", b"v", "w3"), put(b"y", b"v", "w4")])  # the horizon moves to 3
    chain.stabilize()
    for n in ("n1", "n2", "n3"):
        assert chain.nodes[n].store.clean(b"gone") is None, n
        assert chain.nodes[n].store.clean(b"kept") is not None, n
    _, read = chain.read("n2", b"gone")
    assert read is not None and read.error.code == Code.NOT_FOUND


def test_a_collected_delete_never_shows_a_snapshot_the_value_it_superseded():
    chain = Chain(options=CoreOptions(retain_versions=3))
    for n in ("n1", "n2", "n3"):
        chain.add(n)
    chain.configure(config_of("c", 1, ["n1", "n2", "n3"]), ["n1", "n2", "n3"], None)
    chain.write("n1", [put(b"k", b"a", "w1")])  # seq 1
    chain.write("n1", [delete(b"k", "d1")])  # seq 2
    chain.stabilize()
    clean_point(chain, ["n1", "n2", "n3"])  # every member committed the delete
    chain.stabilize()

    assert [(i.key, i.value) for i in page_at(chain, "n2", 1).items] == [(b"k", b"a")], "k=a at 1"
    chain.write("n1", [put(b"k", b"b", "w2")])  # seq 3
    chain.stabilize()
    assert page_at(chain, "n2", 2).items == (), "at 2 the key is deleted, not k=a"
    assert [i.value for i in page_at(chain, "n2", 3).items] == [b"b"]

    for i in range(3):  # seqs 4-6: the horizon passes the delete; snapshots below it are refused
        chain.write("n1", [put(b"x%d" % i, b"v", f"x{i}")])
    chain.stabilize()
    clean_point(chain, ["n1", "n2", "n3"])
    chain.stabilize()
    refused = page_at(chain, "n2", 2)
    assert refused.error.code == Code.COMPACTED and refused.compact_version == 3
    assert chain.nodes["n2"].store.history_versions().get(b"k") is None  # type: ignore[attr-defined]

    # Watches read the committed changes the node keeps in memory: the delete is still there to resume from.
    changes = chain.driver("n2").history.read(0, b"k", b"l").changes
    assert [(c.version, c.value) for c in changes] == [(1, b"a"), (2, b""), (3, b"b")]


def test_a_state_transfer_does_not_bring_back_a_key_whose_delete_was_collected():
    chain = Chain(options=CoreOptions(retain_entries=1, retain_versions=1))
    for n in ("n1", "n2", "n3"):
        chain.add(n)
    chain.configure(config_of("c", 1, ["n1", "n2", "n3"]), ["n1", "n2", "n3"], None)
    chain.write("n1", [put(b"k", b"old", "w1")])
    chain.stabilize()
    chain.crash("n3")  # it keeps k=old on its disk
    chain.configure(config_of("c", 2, ["n1", "n2"]), ["n1", "n2"], None)
    chain.stabilize()
    chain.write("n1", [delete(b"k", "d1")])
    for i in range(5):  # the log moves on and is trimmed: n3 will need a state transfer
        chain.write("n1", [put(b"x%d" % i, b"v", f"x{i}")])
    chain.stabilize()
    clean_point(chain, ["n1", "n2"])
    chain.stabilize()
    assert chain.nodes["n2"].store.clean(b"k") is None

    chain.restart("n3")
    assert chain.nodes["n3"].store.clean(b"k") is not None, "n3 rejoins with the key it held"
    chain.configure(config_of("c", 3, ["n1", "n2"], syncing=["n3"]), ["n1", "n2", "n3"], None)
    chain.stabilize()
    assert "n3" in chain.caught_up, "n3 caught up through a state transfer"
    assert chain.nodes["n3"].store.clean(b"k") is None, "the transfer swept the deleted key"
    assert chain.nodes["n3"].store.clean(b"x4") is not None


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VersionStore]:
    if request.param == "memory":
        yield MemoryVersionStore()
        return
    rocks = RocksVersionStore(tmp_path / "node", "n1", "c")
    try:
        yield rocks
    finally:
        rocks.close()


def entry(seq: int, key: bytes, kind: EntryKind = EntryKind.PUT) -> Entry:
    return Entry(seq, f"r{seq}", key, kind, b"v" if kind == EntryKind.PUT else b"")


def test_collect_garbage_drops_committed_tombstones_through_its_point_only(store: VersionStore):
    store.apply([AppendEntries((entry(1, b"a"), entry(2, b"b"), entry(3, b"a", EntryKind.DELETE),
                                entry(4, b"b", EntryKind.DELETE), entry(5, b"c"), entry(6, b"c", EntryKind.DELETE))),
                 Commit(5)])
    store.apply([CollectGarbage(4)])
    assert store.clean(b"a") is None and store.clean(b"b") is None
    assert store.clean(b"c") is not None and not store.clean(b"c").tombstone  # type: ignore[union-attr]
    store.apply([Commit(6), CollectGarbage(5)])
    assert store.clean(b"c").tombstone, "the delete at 6 is above the point"  # type: ignore[union-attr]
    store.apply([CollectGarbage(6)])
    assert store.clean(b"c") is None and store.key_count() == 0


def test_a_transfer_chunk_sweeps_the_keys_of_its_range_it_does_not_carry(store: VersionStore):
    store.apply([AppendEntries((entry(1, b"a"), entry(2, b"m"), entry(3, b"z"))), Commit(3)])
    store.apply([InstallKeys((KeyVersion(b"b", 9, False, b"new"),), sweep=(None, b"m"))])
    assert store.clean(b"a") is None and store.clean(b"m") is None, "in (start, m] and not sent"
    assert store.clean(b"b") is not None and store.clean(b"z") is not None
    store.apply([InstallKeys((), sweep=(b"m", None))])
    assert store.clean(b"z") is None and store.clean(b"b") is not None
    assert store.key_count() == 1


def test_a_node_whose_disk_is_full_keeps_no_history_so_its_deletes_free_space_at_once():
    chain = Chain(options=CoreOptions(retain_versions=1000))
    for n in ("n1", "n2", "n3"):
        chain.add(n)
    chain.configure(config_of("c", 1, ["n1", "n2", "n3"]), ["n1", "n2", "n3"], None)
    chain.write("n1", [put(b"big", b"v" * 1000, "w1")])
    chain.write("n1", [delete(b"big", "d1")])
    chain.stabilize()
    clean_point(chain, ["n1", "n2", "n3"])
    chain.stabilize()
    assert chain.nodes["n2"].store.history_versions() == {b"big": [1]}  # type: ignore[attr-defined]

    chain.core("n2").set_storage_alarms({"n2"})
    chain.stabilize()
    assert chain.nodes["n2"].store.history_versions() == {}  # type: ignore[attr-defined]
    assert chain.nodes["n2"].store.clean(b"big") is None, "the delete is collected"
    assert page_at(chain, "n2", 1).error.code == Code.COMPACTED
    assert chain.nodes["n3"].store.history_versions() == {b"big": [1]}, "another member still serves it"  # type: ignore[attr-defined]
    assert [i.value for i in page_at(chain, "n3", 1).items] == [b"v" * 1000]
