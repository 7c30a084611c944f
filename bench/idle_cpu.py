"""What an idle cluster costs: CPU cores each process of `keychain up` uses while nobody sends requests.

    PYTHONSAFEPATH=1 .venv/bin/python bench/idle_cpu.py [--duration 10] [--settle 3] [--spy]

It starts `keychain up` (3 coordinators, 3 chain nodes, one proxy), waits `--settle` seconds after its
ready line (the chain forms, the first leases and elections settle), then reads each process's user +
system CPU from /proc/<pid>/stat before and after `--duration` idle seconds and prints the cores used.
What an idle cluster burns (Raft heartbeats, node heartbeats, the proxy's polls, keepalives) is also
taken from every request under load, so it is worth keeping small.

With `--spy` (needs `py-spy`, in the `bench` extra), each coordinator is sampled during the window and
the functions where it was busiest are listed (share of busy samples, the function and what it calls).

The load average is printed before and after: on a shared machine, figures are noisy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# write_profile.py finds the processes by role and samples them with py-spy; vs_etcd.py starts
# `keychain up` and reads CPU from /proc: share them.
_spec = importlib.util.spec_from_file_location("bench_write_profile",
                                               Path(__file__).resolve().with_name("write_profile.py"))
assert _spec and _spec.loader
write_profile = importlib.util.module_from_spec(_spec)
sys.modules["bench_write_profile"] = write_profile
_spec.loader.exec_module(write_profile)
vs_etcd = write_profile.vs_etcd

MAX_DURATION = 60.0


def coordinator_leader(base_port: int) -> str:
    """The coordinators' leader, from the first one's admin API (`keychain up` puts it at base + 81)."""
    try:
        status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{base_port + 81}/v1/status", timeout=5).read())
    except (OSError, ValueError):
        return ""
    return str(status.get("leader", ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help=f"idle seconds measured (at most {MAX_DURATION:g})")
    p.add_argument("--settle", type=float, default=3.0, help="seconds waited after the ready line first")
    p.add_argument("--keychain-port", type=int, default=18080)
    p.add_argument("--keychain-base-port", type=int, default=17000)
    p.add_argument("--spy", action="store_true", help="sample the coordinators with py-spy during the window")
    p.add_argument("--verbose", action="store_true")
    opts = p.parse_args(argv)
    if not 0 < opts.duration <= MAX_DURATION:
        p.error(f"--duration must be in (0, {MAX_DURATION:g}]")
    print(f"load average before: {write_profile.load_average()}", flush=True)
    with vs_etcd.keychain_cluster(opts.keychain_port, opts.keychain_base_port, opts.verbose) as target, \
            tempfile.TemporaryDirectory(prefix="idle-cpu-") as tmp:
        time.sleep(opts.settle)
        pids = write_profile.processes(target.pids[0], target.url)
        coordinators = {name: pid for name, pid in pids.items() if name.startswith("coord")}
        spies = write_profile.start_spies(coordinators, opts.duration, Path(tmp)) if opts.spy else []
        before = {name: vs_etcd.cpu_seconds([pid]) for name, pid in pids.items()}
        started = time.monotonic()
        time.sleep(opts.duration)
        after = {name: vs_etcd.cpu_seconds([pid]) for name, pid in pids.items()}
        seconds = time.monotonic() - started
        for _, _, proc in spies:
            proc.wait(30)
        leader = coordinator_leader(opts.keychain_base_port)
        print(f"load average after: {write_profile.load_average()}")
        print(f"\nidle for {seconds:.1f}s\n")
        order = ["proxy", "head", "middle", "tail", *sorted(coordinators)]
        rows = [["process", "CPU cores"]]
        for name in [n for n in order if n in pids]:
            rows.append([name + (" (leader)" if name == leader else ""), f"{(after[name] - before[name]) / seconds:.3f}"])
        rows.append(["coordinators", f"{sum(after[n] - before[n] for n in coordinators) / seconds:.3f}"])
        rows.append(["all", f"{sum(after[n] - before[n] for n in pids) / seconds:.3f}"])
        print(vs_etcd.aligned(rows))
        for name, raw, _ in spies:
            if raw.exists():
                print(f"\npy-spy, {name}: share of busy samples (function and what it calls)")
                for share, frame in write_profile.busiest(raw):
                    print(f"  {share * 100:5.1f}%  {frame[:110]}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except vs_etcd.BenchError as e:
        print(f"idle_cpu: {e}", file=sys.stderr)
        sys.exit(1)
