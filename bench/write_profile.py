"""Where a write's time goes: CPU per write in every process of `keychain up`, and the wall clock of a
write's stages, during one wrk write phase (the same load as `vs_etcd.py`'s).

    PYTHONSAFEPATH=1 .venv/bin/python bench/write_profile.py [--duration 10] [--concurrency 64] [--spy]

It starts `keychain up` (3 coordinators, 3 chain nodes, one proxy), runs wrk's write phase, and prints:

- per process (proxy, head, middle, tail, each coordinator): CPU cores used and CPU microseconds per
  acknowledged write, from /proc/<pid>/stat before and after the phase (children included: none);
- the wall clock of a write, by stage, from the client and the proxy's own metrics: wrk's latency,
  the proxy's (from the request's arrival to its answer), their difference (HTTP parsing and the
  socket), the batches sent to the head, their mean size, and the time a batch is out at the head
  (the chain's round trip: the head's sequencing and sync, the hops, the syncs down the chain and the
  acks back, from the proxy's `keychain_proxy_write_batch_seconds`), the batches out at once on
  average (Little's law); the rest of the proxy's time is the wait for a batch slot;
- with `--spy` (needs `py-spy`, in the `bench` extra), for each process the functions where py-spy
  found it busiest, sampled during the phase.

The load average is printed before and after: on a shared machine, figures are noisy.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

# vs_etcd.py starts and stops `keychain up`, runs wrk and measures CPU: share it.
_spec = importlib.util.spec_from_file_location("bench_vs_etcd", Path(__file__).resolve().with_name("vs_etcd.py"))
assert _spec and _spec.loader
vs_etcd = importlib.util.module_from_spec(_spec)
sys.modules["bench_vs_etcd"] = vs_etcd  # dataclasses look their module up by name
_spec.loader.exec_module(vs_etcd)

MAX_DURATION = 60.0
SPY_RATE = 100  # samples per second per process
SPY_TOP = 8  # functions shown per process


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def processes(root: int, url: str) -> dict[str, int]:
    """The cluster's processes by what they are: proxy, head, middle, tail, coord-N."""
    roles = {}
    cluster = json.loads(urllib.request.urlopen(f"{url}/v1/cluster", timeout=5).read())
    for chain in cluster["chains"]:
        for m in chain["members"]:
            roles[m["id"]] = m["role"]
    found: dict[str, int] = {}
    for pid in vs_etcd.process_tree([root]):
        argv = cmdline(pid)
        if "keychain" not in argv or len(argv) < argv.index("keychain") + 2:
            continue
        kind = argv[argv.index("keychain") + 1]
        ident = argv[argv.index("--id") + 1] if "--id" in argv else ""
        if kind == "proxy":
            found["proxy"] = pid
        elif kind == "node":
            found[roles.get(ident, ident)] = pid
        elif kind == "coordinator":
            found[ident] = pid
    return found


def proxy_metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    wanted = {
        'keychain_proxy_request_seconds_sum{op="put"}': "put_seconds",
        'keychain_proxy_request_seconds_count{op="put"}': "puts",
        "keychain_proxy_write_batch_ops_sum": "batched_ops",
        "keychain_proxy_write_batch_ops_count": "batches",
        "keychain_proxy_write_batch_seconds_sum": "batch_seconds",
    }
    out = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            out[wanted[name]] = float(value)
    return out


def start_spies(pids: dict[str, int], seconds: float, work: Path) -> list[tuple[str, Path, subprocess.Popen[bytes]]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise vs_etcd.BenchError("--spy needs py-spy: pip install -e '.[bench]'")
    spies = []
    for name, pid in pids.items():
        out = work / f"{name}.txt"
        argv = [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(SPY_RATE), "-f", "raw",
                "-o", str(out), "--nonblocking"]
        spies.append((name, out, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    return spies


def busiest(raw: Path) -> list[tuple[float, str]]:
    """Share of busy samples per function (its own frame and below), py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    skip = re.compile(r"runpy|__main__|cli\.py|/main\.py|asyncio/(runners|base_events|events)\.py|threading\.py")
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        for frame in dict.fromkeys(stack.split(";")):
            if not skip.search(frame):
                inclusive[frame] += n
    return [(n / total, frame) for frame, n in inclusive.most_common(SPY_TOP)] if total else []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help=f"seconds of writes (at most {MAX_DURATION:g})")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--keychain-port", type=int, default=18080)
    p.add_argument("--keychain-base-port", type=int, default=17000)
    p.add_argument("--spy", action="store_true", help="sample every process with py-spy during the phase")
    p.add_argument("--verbose", action="store_true")
    opts = p.parse_args(argv)
    if not 0 < opts.duration <= MAX_DURATION:
        p.error(f"--duration must be in (0, {MAX_DURATION:g}]")
    tools = vs_etcd.ensure_tools(["wrk"])
    print(f"load average before: {load_average()}", flush=True)
    with vs_etcd.keychain_cluster(opts.keychain_port, opts.keychain_base_port, opts.verbose) as target, \
            tempfile.TemporaryDirectory(prefix="write-profile-") as tmp:
        pids = processes(target.pids[0], target.url)
        before_cpu = {name: vs_etcd.cpu_seconds([pid]) for name, pid in pids.items()}
        before_metrics = proxy_metrics(target.url)
        spies = start_spies(pids, opts.duration, Path(tmp)) if opts.spy else []
        result = vs_etcd.run_phase(tools["wrk"], target, "write", opts)
        after_cpu = {name: vs_etcd.cpu_seconds([pid]) for name, pid in pids.items()}
        after_metrics = proxy_metrics(target.url)
        for _, _, proc in spies:
            proc.wait(30)
        writes = max(1, result.requests - result.errors.get("status", 0))
        seconds = result.duration_s
        print(f"load average after: {load_average()}")
        print(f"\n{opts.concurrency} connections, {opts.value_size}-byte values, {seconds:.1f}s: "
              f"{writes / seconds:,.0f} writes/s, p50 {result.latency_ms['p50']:.1f} ms, "
              f"p99 {result.latency_ms['p99']:.1f} ms, errors {result.failed}\n")
        order = ["proxy", "head", "middle", "tail", *sorted(n for n in pids if n.startswith("coord"))]
        rows = [["process", "CPU cores", "CPU us/write"]]
        total = 0.0
        for name in [n for n in order if n in pids]:
            used = after_cpu[name] - before_cpu[name]
            total += used
            rows.append([name, f"{used / seconds:.2f}", f"{used / writes * 1e6:,.0f}"])
        rows.append(["all", f"{total / seconds:.2f}", f"{total / writes * 1e6:,.0f}"])
        print(vs_etcd.aligned(rows))
        d = {k: after_metrics.get(k, 0.0) - before_metrics.get(k, 0.0) for k in after_metrics}
        batches = max(1.0, d.get("batches", 0.0))
        proxy_ms = d.get("put_seconds", 0.0) / max(1.0, d.get("puts", 0.0)) * 1e3
        batch_out_ms = d.get("batch_seconds", 0.0) / batches * 1e3
        in_flight = d.get("batch_seconds", 0.0) / seconds  # Little's law: mean batches out at once
        stages = [
            ["stage (wall clock, means)", "ms"],
            ["client latency (wrk, mean)", f"{result.latency_ms['mean']:.1f}"],
            ["  HTTP in and out of the proxy (wrk - proxy)", f"{result.latency_ms['mean'] - proxy_ms:.1f}"],
            ["  at the proxy (arrival to answer)", f"{proxy_ms:.1f}"],
            ["    a batch out at the head (chain round trip)", f"{batch_out_ms:.1f}"],
            ["    waiting for a batch slot (the rest)", f"{max(0.0, proxy_ms - batch_out_ms):.1f}"],
            ["batches/s to the head", f"{batches / seconds:,.0f}"],
            ["batches out at once (mean)", f"{in_flight:.1f}"],
            ["writes per batch", f"{d.get('batched_ops', 0.0) / batches:.1f}"],
        ]
        print()
        print(vs_etcd.aligned(stages))
        for name, raw, _ in spies:
            if raw.exists():
                print(f"\npy-spy, {name}: share of busy samples (function and what it calls)")
                for share, frame in busiest(raw):
                    print(f"  {share * 100:5.1f}%  {frame[:110]}")
    return 0


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    try:
        sys.exit(main())
    except vs_etcd.BenchError as e:
        print(f"write_profile: {e}", file=sys.stderr)
        sys.exit(1)
