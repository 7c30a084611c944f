"""TEST ONLY: storage faults injected into a node process, for the gray-failure tests and benchmarks.

    KEYCHAIN_TEST_STALL_SYNC=<path of a trigger file>

While a file exists at that path, every sync of the node's store blocks (polling for the file to
go away), as on a dying disk whose fsync hangs: the node stays up, heartbeats and answers, but
nothing it applies becomes durable, so it acknowledges nothing. Removing the file lets the
blocked sync finish. Production never sets the variable; a node started with it says so loudly.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from keychain.node.storage import RocksVersionStore

log = logging.getLogger(__name__)

STALL_SYNC_ENV = "KEYCHAIN_TEST_STALL_SYNC"
_POLL = 0.02  # seconds between looks at the trigger file while a sync is stalled


class SyncStallingStore(RocksVersionStore):
    """A RocksDB store whose `sync` waits while the trigger file exists (test only)."""

    def __init__(self, trigger: Path, path: str | Path, node_id: str, chain: str) -> None:
        super().__init__(path, node_id, chain)
        self.trigger = trigger

    def sync(self) -> None:
        """Block while the trigger file exists, then make every applied record durable."""
        while self.trigger.exists():
            time.sleep(_POLL)
        super().sync()


def open_store(data_dir: Path | str, node_id: str, chain: str,
               environ: Mapping[str, str] = os.environ) -> RocksVersionStore:
    """The node's store: a plain RocksVersionStore, or, when the test-only variable is set, one whose
    syncs stall on its trigger file."""
    trigger = environ.get(STALL_SYNC_ENV)
    if not trigger:
        return RocksVersionStore(data_dir, node_id, chain)
    log.warning("TEST-ONLY storage fault enabled: syncs stall while %s exists (%s)", trigger, STALL_SYNC_ENV)
    return SyncStallingStore(Path(trigger), data_dir, node_id, chain)
