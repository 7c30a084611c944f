"""Failover times of a local cluster (3 coordinators + 3 chain nodes, real processes on 127.0.0.1).

    PYTHONSAFEPATH=1 .venv/bin/python bench/failover_bench.py --runs 5

Each run starts a fresh cluster and measures, one after the other, with a writer and a reader
running against the chain nodes the whole time (writes at the head, reads spread over the nodes,
straight over gRPC):

- coordinator leader killed (kill -9) -> a new leader elected (as a surviving member reports it);
  and during the following 3 s, the chain operations that failed or took longer than 200 ms
  (the target is none: the lease outlasts the election);
- chain head, middle and tail killed (kill -9), each in turn on a fresh cluster member layout
  -> the first write acknowledged after the kill ("writes flowing again").

Prints every run and the medians. Figures depend on the machine; this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))

from cluster_harness import ChainLoad, ProcessCluster, wait_for

SLOW = 0.2  # seconds: an operation slower than this counts as interrupted


def ready_cluster(root: Path) -> ProcessCluster:
    c = ProcessCluster(root, coordinators=3, nodes=3, log_level="warning")
    c.start_all()
    try:
        wait_for("three active chain members", lambda: sorted(c.roles().values()) == ["head", "middle", "tail"],
                 timeout=30, interval=0.1)
        wait_for("every node serving", lambda: all(c.node_status(n).lease_valid for n in c.names("node")),
                 timeout=10)
    except BaseException:
        c.stop_all()  # a cluster that never formed must not outlive the bench
        raise
    return c


def leader_seen(c: ProcessCluster, old: str) -> str | None:
    for name in c.names("coordinator"):
        if name == old or not c.procs[name].alive:
            continue
        try:
            code, body = c.http_get(name, "/healthz", timeout=0.2)
        except OSError:
            continue
        if code == 200 and body.get("leader") not in ("", None, old):
            return body["leader"]
    return None


def one_run(root: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    c = ready_cluster(root / "coord")
    load = ChainLoad(c, timeout=0.5, write_pause=0.0, read_pause=0.002)
    load.start()
    try:
        time.sleep(1.0)
        old = wait_for("a leader", c.leader, timeout=5)
        t0 = time.monotonic()
        c.kill(old)
        wait_for("a new leader", lambda: leader_seen(c, old), timeout=10, interval=0.005)
        out["coordinator leader -> new leader (s)"] = time.monotonic() - t0
        time.sleep(3.0)
        window = load.ops_between(t0, t0 + 3.0)
        out["ops during coordinator election"] = len(window)
        out["failed ops during coordinator election"] = sum(not op.ok for op in window)
        out[f"ops slower than {SLOW * 1000:.0f} ms during coordinator election"] = sum(
            op.ok and op.took > SLOW for op in window)
    finally:
        load.finish(2)
        c.stop_all()

    for role in ("head", "middle", "tail"):
        c = ready_cluster(root / role)
        load = ChainLoad(c, timeout=0.5, write_pause=0.0, read_pause=0.002)
        load.start()
        try:
            time.sleep(1.0)
            victim = next(n for n, r in c.roles().items() if r == role)
            t0 = time.monotonic()
            c.kill(victim)
            took = load.first_write_after(t0, timeout=15)
            out[f"{role} killed -> writes flowing (s)"] = took if took is not None else float("nan")
        finally:
            load.finish(2)
            c.stop_all()
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    results: list[dict[str, float]] = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="keychain-failover-") as tmp:
            r = one_run(Path(tmp))
        results.append(r)
        print(f"run {i + 1}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in r.items()), flush=True)
    print(f"\nmedians over {args.runs} runs  (command: PYTHONSAFEPATH=1 .venv/bin/python bench/failover_bench.py "
          f"--runs {args.runs})")
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"  {key:<58} {statistics.median(values):8.3f}   (min {min(values):.3f}, max {max(values):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
