"""Cost of the RocksDB store's `apply()` on the write path: append a batch of entries, then commit it.

Each round applies `AppendEntries` of `--batch` PUT entries (keys drawn from `--keys` distinct keys,
each with a request id, as a head's batched client writes are) and then `Commit` through the last of
them, optionally followed by `sync()`. Prints microseconds per round and entries per second.

    PYTHONSAFEPATH=1 .venv/bin/python bench/storage_bench.py --rounds 2000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keychain.node.messages import Entry, EntryKind
from keychain.node.storage import RocksVersionStore
from keychain.node.versions import AppendEntries, Commit


def run(
    open_store: Callable[[Path], Any], rounds: int, batch: int, keys: int, sync: bool, max_seconds: float,
    seed: int = 1,
) -> tuple[int, float]:
    """Apply up to `rounds` append+commit rounds (stopping after `max_seconds`); returns (rounds, seconds)."""
    rng = random.Random(seed)
    names = [f"key-{i:06d}".encode() for i in range(keys)]
    with tempfile.TemporaryDirectory(prefix="kc-storage-bench-") as tmp:
        store = open_store(Path(tmp) / "data")
        try:
            seq = 0
            started = time.perf_counter()
            done = 0
            while done < rounds and time.perf_counter() - started < max_seconds:
                entries = []
                for _ in range(batch):
                    seq += 1
                    entries.append(Entry(seq, f"req-{seq}", rng.choice(names), EntryKind.PUT, b"v" * 16))
                store.apply([AppendEntries(tuple(entries)), Commit(seq)])
                if sync:
                    store.sync()
                done += 1
            return done, time.perf_counter() - started
        finally:
            store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--batch", type=int, default=64, help="entries per AppendEntries")
    p.add_argument("--keys", type=int, default=10_000, help="distinct keys written")
    p.add_argument("--sync", action="store_true", help="sync() after every round")
    p.add_argument("--max-seconds", type=float, default=30.0, help="stop early after this long")
    args = p.parse_args()
    done, seconds = run(
        lambda path: RocksVersionStore(path, "bench", "bench"),
        args.rounds, args.batch, args.keys, args.sync, args.max_seconds,
    )
    print(f"rounds={done} batch={args.batch} keys={args.keys} sync={args.sync} "
          f"us_per_round={seconds / done * 1e6:.0f} entries_per_s={done * args.batch / seconds:.0f}")


if __name__ == "__main__":
    main()
