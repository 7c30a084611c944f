"""The test-only storage fault: a node's syncs stall while a trigger file exists, and only when the
test-only variable names one."""

from __future__ import annotations

import threading
from pathlib import Path

from keychain.node.fault_injection import STALL_SYNC_ENV, SyncStallingStore, open_store
from keychain.node.storage import RocksVersionStore


def test_a_store_opened_without_the_variable_is_a_plain_store(tmp_path: Path):
    store = open_store(tmp_path / "db", "n1", "main", environ={})
    try:
        assert type(store) is RocksVersionStore
    finally:
        store.close()


def test_syncs_stall_while_the_trigger_file_exists_and_finish_once_it_is_gone(tmp_path: Path):
    trigger = tmp_path / "stall"
    trigger.touch()
    store = open_store(tmp_path / "db", "n1", "main", environ={STALL_SYNC_ENV: str(trigger)})
    try:
        assert isinstance(store, SyncStallingStore)
        synced = threading.Event()
        syncing = threading.Thread(target=lambda: (store.sync(), synced.set()))
        syncing.start()
        assert not synced.wait(0.3), "the sync went through while the trigger file exists"
        trigger.unlink()
        assert synced.wait(10), "the sync stayed stalled after the trigger file was removed"
        syncing.join()
    finally:
        store.close()
