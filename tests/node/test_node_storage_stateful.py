"""The RocksDB store behaves exactly as the in-memory store: random record sequences (transactions'
entries of several keys among them), refused records and restarts, with every read method compared
after each step (the versions a range reads at a snapshot included)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from keychain.node.messages import ChainConfig, Entry, EntryKind, KeyVersion, Member, RequestOutcome, TxnWrite
from keychain.node.storage import RocksVersionStore
from keychain.node.versions import (
    AppendEntries,
    Commit,
    CompactHistory,
    ForgetOutcomes,
    InstallKeys,
    MemoryVersionStore,
    Record,
    ResetLog,
    SaveConfig,
    StoreError,
    TrimLog,
    Truncate,
)

KEYS = [b"", b"a", b"a\x00", b"ab", b"b", b"\xff"]
REQUEST_IDS = ["", "", "r1", "r2", "r3", "\u00e9"]

keys = st.sampled_from(KEYS)
request_ids = st.sampled_from(REQUEST_IDS)
kinds = st.sampled_from(list(EntryKind))
offsets = st.integers(min_value=-2, max_value=3)  # mostly valid seqs, sometimes just outside the range


class StoresAgree(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="kc-store-"))
        self.memory = MemoryVersionStore()
        self.rocks = RocksVersionStore(self.dir / "data", "n1", "main")

    def teardown(self) -> None:
        self.rocks.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def both(self, records: list[Record]) -> None:
        """Apply to both stores: both succeed, or both refuse the same record."""
        outcomes = []
        for store in (self.memory, self.rocks):
            try:
                store.apply(records)
                outcomes.append(None)
            except StoreError:
                outcomes.append("refused")
        assert outcomes[0] == outcomes[1], f"{records}: memory {outcomes[0]}, rocksdb {outcomes[1]}"

    @rule(data=st.data(), count=st.integers(1, 4), skew=st.sampled_from([0, 0, 0, 0, 1, -1]))
    def append(self, data: st.DataObject, count: int, skew: int) -> None:
        first = self.memory.state().last_seq + 1 + skew
        entries = []
        for seq in range(first, first + count):
            kind = data.draw(kinds)
            if kind == EntryKind.TXN:  # one write per key, as the head builds it
                written = data.draw(st.lists(keys.filter(bool), max_size=3, unique=True))
                writes = tuple(TxnWrite(k, t, b"" if t else b"t%d" % seq)
                               for k, t in zip(written, data.draw(st.lists(st.booleans(), min_size=len(written),
                                                                           max_size=len(written))), strict=True))
                entries.append(Entry(seq, data.draw(request_ids), b"", kind, writes=writes,
                                     succeeded=data.draw(st.booleans())))
                continue
            entries.append(Entry(
                seq, data.draw(request_ids), data.draw(keys), kind,
                data.draw(st.binary(max_size=3)) if kind == EntryKind.PUT else b"",
                data.draw(st.integers(0, seq)) if kind == EntryKind.NOOP else 0,
            ))
        self.both([AppendEntries(tuple(entries))])

    @rule(offset=offsets)
    def commit(self, offset: int) -> None:
        self.both([Commit(self.memory.state().last_seq - offset)])

    @rule(offset=offsets)
    def truncate(self, offset: int) -> None:
        self.both([Truncate(self.memory.state().committed_seq + offset)])

    @rule(offset=offsets)
    def trim(self, offset: int) -> None:
        self.both([TrimLog(self.memory.state().committed_seq - offset)])

    @rule(offset=offsets)
    def compact(self, offset: int) -> None:
        self.both([CompactHistory(self.memory.state().committed_seq - offset)])

    @rule(offset=offsets)
    def forget(self, offset: int) -> None:
        self.both([ForgetOutcomes(self.memory.state().committed_seq - offset)])

    @rule(
        versions=st.lists(st.tuples(keys, st.integers(1, 12), st.booleans(), st.binary(max_size=2)), max_size=4),
        outcomes=st.lists(st.tuples(request_ids.filter(bool), st.integers(1, 12),
                                    st.sampled_from(list(EntryKind))), max_size=3),
        reset=st.booleans(), offset=offsets,
    )
    def transfer(self, versions: list, outcomes: list, reset: bool, offset: int) -> None:
        records: list[Record] = [InstallKeys(
            tuple(KeyVersion(k, v, t, b"" if t else val) for k, v, t, val in versions),
            tuple(RequestOutcome(r, s, kind) for r, s, kind in outcomes),
        )]
        if reset:
            records.append(ResetLog(self.memory.state().last_seq + offset))
        self.both(records)

    @rule(epoch=st.integers(0, 5))
    def save_config(self, epoch: int) -> None:
        self.both([SaveConfig(ChainConfig("main", epoch, (Member("n1", "127.0.0.1:1"),)))])

    @rule()
    def restart(self) -> None:
        self.rocks.sync()
        self.rocks.close()
        self.rocks = RocksVersionStore(self.dir / "data", "n1", "main")

    @precondition(lambda self: self.memory.state().last_seq > 0)
    @rule(data=st.data())
    def entries_agree(self, data: st.DataObject) -> None:
        state = self.memory.state()
        lo = data.draw(st.integers(0, state.last_seq + 1))
        hi = data.draw(st.integers(lo - 1, state.last_seq + 1))
        results = []
        for store in (self.memory, self.rocks):
            try:
                results.append(store.entries(lo, hi))
            except StoreError:
                results.append("refused")
        assert results[0] == results[1]

    @invariant()
    def reads_agree(self) -> None:
        m, r = self.memory, self.rocks
        assert m.state() == r.state()
        assert m.key_count() == r.key_count()
        assert m.dirty_versions() == r.dirty_versions()
        for key in KEYS:
            assert m.clean(key) == r.clean(key)
            for seq in range(m.state().last_seq + 2):
                assert m.version(key, seq) == r.version(key, seq)
        for rid in REQUEST_IDS:
            assert m.outcome(rid) == r.outcome(rid)
        assert m.scan_clean(None, 100) == r.scan_clean(None, 100)
        for after in KEYS:
            assert m.scan_clean(after, 2) == r.scan_clean(after, 2)
        assert m.scan_outcomes(None, 100) == r.scan_outcomes(None, 100)
        assert m.history_versions() == r.history_versions()
        assert m.installed_through() == r.installed_through()
        for snapshot in range(m.state().last_seq + 1):
            for start, end in ((b"", b""), (b"a", b"b"), (b"a\x00", b"")):
                assert list(m.scan_at(start, end, snapshot)) == list(r.scan_at(start, end, snapshot))
        for rid in REQUEST_IDS:
            assert m.scan_outcomes(rid, 1) == r.scan_outcomes(rid, 1)
        state = m.state()
        if state.last_seq > state.log_start:
            assert m.entries(state.log_start + 1, state.last_seq) == r.entries(state.log_start + 1, state.last_seq)


StoresAgree.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_rocksdb_store_matches_the_memory_store = StoresAgree.TestCase
