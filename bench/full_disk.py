"""Full disk: how long after space is back the chain accepts writes again, with no restart.

Each run starts three coordinators, three nodes whose data directories share one small tmpfs volume
(mounted for the run, root only) and a proxy; writes fresh 32 KiB values through the proxy until the
chain refuses one with 507 insufficient_storage; then removes the filler file that took most of the
volume and writes every 20 ms until one is accepted. Reported per run and as median / max:

    resume   seconds from the filler's removal to the first acknowledged write
    filled   writes acknowledged before the first 507

    python bench/full_disk.py --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))

from full_disk_harness import FullDiskCluster, can_mount, full_disk_cluster, write_until_refused


def first_write(fd: FullDiskCluster, since: float, label: str) -> float:
    """Seconds from `since` to the first write the chain accepts (one try every 20 ms)."""
    n = 0
    while time.monotonic() < since + 30:
        n += 1
        if fd.proxy.put(f"{label}-{n}", b"space is back", f"w-{label}-{n}-{since}")[0] == 200:
            return time.monotonic() - since
        time.sleep(0.02)
    raise SystemExit(f"writes did not resume within 30 s ({label})")


def one_run(root: Path) -> tuple[float, float]:
    with full_disk_cluster(root) as fd:
        acked: dict[str, bytes] = {}
        status, body, _ = write_until_refused(fd, acked)
        if status != 507:
            raise SystemExit(f"expected 507 once the volume filled, got {status}: {body}")
        for key in acked:
            fd.proxy.request("DELETE", f"/v1/kv/{key}")
        after_deletes = first_write(fd, time.monotonic(), "deleted")
        status, body, _ = write_until_refused(fd, {})
        if status != 507:
            raise SystemExit(f"expected 507 once the volume filled again, got {status}: {body}")
        fd.free_space()
        return after_deletes, first_write(fd, time.monotonic(), "grown")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    if not can_mount():
        print("full_disk: needs root on Linux to mount a tmpfs volume", file=sys.stderr)
        return 2
    deletes, growths = [], []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="keychain-full-disk-") as tmp:
            after_deletes, after_growth = one_run(Path(tmp))
        deletes.append(after_deletes)
        growths.append(after_growth)
        print(f"run {run}: writes resume {after_deletes:.3f} s after the deletes, {after_growth:.3f} s after the "
              f"volume grew", flush=True)
    for label, xs in (("after deletes", deletes), ("after growth", growths)):
        print(f"resume {label}: median {statistics.median(xs):.3f} s, max {max(xs):.3f} s over {len(xs)} runs "
              f"(goal: <= 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
