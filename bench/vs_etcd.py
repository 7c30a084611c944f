"""KeychainDB against etcd on one machine: the same HTTP load, side by side.

Starts a local KeychainDB cluster (`keychain up`) and then a 3-member etcd cluster on 127.0.0.1,
one after the other so each has the machine to itself, and drives each with the same load
generator (wrk, with bench/wrk_kv.lua), the same concurrency, value size, duration and key space:

- write phase: KeychainDB `PUT /v1/kv/{key}` (raw body); etcd `POST /v3/kv/put` (JSON gateway,
  base64 key and value). Both acknowledge only durable, replicated writes.
- read phase: KeychainDB `GET /v1/kv/{key}?consistency=strong`; etcd `POST /v3/kv/range`
  (linearizable, etcd's default). Every key is written before the read phase. Reads are spread
  over every endpoint (wrk's threads split evenly over etcd's 3 members, as etcd's client balancer
  does, and over KeychainDB's proxies), then sent to one endpoint alone (etcd's leader, KeychainDB's
  first proxy) as a second row.

`--member-cpu C` gives every member of both systems (KeychainDB's coordinators, chain nodes and
proxies; etcd's members) a cgroup of its own capped at C CPUs, "one machine per member" (see
bench/member_cpu.py), and prints the cores each member used. wrk stays outside the caps.
`--proxies N` starts N-1 more KeychainDB proxies beside `keychain up`'s own, each its own member.

It prints writes/s, reads/s, p50 and p99 latency for both with the KeychainDB/etcd ratios, the
CPU the servers and wrk used (to see where the time goes), and one JSON line with everything.

    PYTHONSAFEPATH=1 .venv/bin/python bench/vs_etcd.py [--duration 10] [--concurrency 64]
        [--value-size 100] [--keys 10000] [--only keychain|etcd] [--keychain-url URL]
        [--member-cpu C] [--proxies N]

etcd and wrk come from Debian's `etcd-server` and `wrk` packages; run as root, the script
installs them with apt-get when they are missing. etcd's writes go to its Raft leader, its best case.

The etcd cluster and the KeychainDB supervisor are managed by hand: starting a few local
processes and waiting for a line or a health check needs nothing a library would add.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from keychain.local import busy_ports

sys.path.insert(0, str(Path(__file__).resolve().parent))
import member_cpu  # a sibling module of this script, not a package

WRK_SCRIPT = Path(__file__).resolve().with_name("wrk_kv.lua")
MAX_DURATION = 120.0  # seconds per phase: a benchmark run stays bounded
ETCD_MEMBERS = 3
KEYCHAIN_READY_TIMEOUT = 120.0
ETCD_READY_TIMEOUT = 30.0
PREFILL_TIMEOUT = 300.0
RESULT_PREFIX = "BENCH_RESULT "
SYSTEMS = ("keychain", "etcd")
LABELS = {"keychain": "KeychainDB", "etcd": "etcd"}


class BenchError(Exception):
    """The benchmark cannot go on; the message says why and what to do."""


# ---- keys and values: the same derivation as bench/wrk_kv.lua ----


def key_name(i: int) -> str:
    return f"bench-{i:08d}"


def value_for(key: str, size: int) -> bytes:
    unit = (key + "/").encode()
    return (unit * (size // len(unit) + 1))[:size]


def thread_start_keys(keys: int, threads: int) -> list[str]:
    """The key each wrk thread writes first (its connections write the following ones)."""
    return [key_name(t * keys // threads) for t in range(threads)]


def keys_sent_first(keys: int, threads: int) -> list[str]:
    """Keys every wrk thread surely sends early in the write phase: the one after its start key.

    wrk calls the first thread's request() once before the run, to verify the script, and never
    sends that request, so the first thread's start key itself is not written.
    """
    return [key_name((t * keys // threads + 1) % keys) for t in range(threads)]


# ---- the two HTTP APIs, for filling and checking (wrk drives the measured load) ----


class KVClient:
    """Blocking put/get over one keep-alive HTTP/1.1 connection per thread."""

    def __init__(self, system: str, url: str, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise BenchError(f"expected an http:// URL, got {url!r}")
        self.system, self.host, self.port = system, parsed.hostname, parsed.port or 80
        self.timeout = timeout
        self.local = threading.local()

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        for attempt in (1, 2):  # one retry on a connection the server closed while idle
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def put(self, key: str, value: bytes) -> None:
        if self.system == "keychain":
            status, body = self.request("PUT", f"/v1/kv/{key}", value, {"Content-Type": "application/octet-stream"})
        else:
            payload = {"key": b64(key.encode()), "value": b64(value)}
            status, body = self.request("POST", "/v3/kv/put", json.dumps(payload).encode(), JSON_HEADERS)
        if status != 200:
            raise BenchError(f"{LABELS[self.system]}: put {key} answered {status}: {body[:200]!r}")

    def get(self, key: str) -> bytes | None:
        if self.system == "keychain":
            status, body = self.request("GET", f"/v1/kv/{key}?consistency=strong", None, {})
            if status == 404:
                return None
            if status != 200:
                raise BenchError(f"KeychainDB: get {key} answered {status}: {body[:200]!r}")
            return body
        payload = json.dumps({"key": b64(key.encode())}).encode()
        status, body = self.request("POST", "/v3/kv/range", payload, JSON_HEADERS)
        if status != 200:
            raise BenchError(f"etcd: range {key} answered {status}: {body[:200]!r}")
        kvs = json.loads(body).get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None


JSON_HEADERS = {"Content-Type": "application/json"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def prefill(client: KVClient, keys: int, value_size: int, workers: int) -> float:
    """Write every key once; returns the seconds it took."""
    started = time.monotonic()
    deadline = started + PREFILL_TIMEOUT

    stop = threading.Event()  # set when the script is interrupted: the workers end at their next key

    def write_slice(first: int) -> None:
        for i in range(first, keys, workers):
            if stop.is_set():
                return
            if time.monotonic() > deadline:
                raise BenchError(f"{LABELS[client.system]}: writing {keys} keys took over {PREFILL_TIMEOUT:.0f}s")
            key = key_name(i)
            client.put(key, value_for(key, value_size))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for future in [pool.submit(write_slice, w) for w in range(workers)]:
                future.result()
        except BaseException:
            stop.set()
            raise
    return time.monotonic() - started


def check_values(client: KVClient, keys: list[str], value_size: int) -> None:
    """Each key must read back as exactly the value the load generator derives for it."""
    for key in keys:
        got = client.get(key)
        want = value_for(key, value_size)
        if got != want:
            shown = None if got is None else got[:60]
            raise BenchError(f"{LABELS[client.system]}: {key} reads back {shown!r}, expected {want[:60]!r}...")


# ---- processes: CPU accounting ----


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(roots: list[int]) -> list[int]:
    """The given pids and all their live descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = set(roots), list(roots)
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sorted(tree)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (the ones still alive)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- the systems under test ----


@dataclass
class Target:
    """A running system: where to send the load and which processes serve it."""

    system: str
    url: str
    pids: list[int] = field(default_factory=list)  # empty: an external cluster, CPU not measured
    client_tls: dict[str, str] = field(default_factory=dict)  # cacert, cert, key of a TLS cluster
    spread_urls: list[str] = field(default_factory=list)  # every endpoint reads may go to (etcd members, proxies)
    members: dict[str, int] = field(default_factory=dict)  # member name -> pid, for --member-cpu


DEBIAN_PACKAGES = {"etcd": "etcd-server", "wrk": "wrk"}


def ensure_tools(tools: list[str]) -> dict[str, str]:
    """Paths of the tools, installing their Debian packages when missing and allowed to."""
    wanted = {tool: DEBIAN_PACKAGES[tool] for tool in tools}
    missing = [pkg for tool, pkg in wanted.items() if shutil.which(tool) is None]
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise BenchError(f"missing {', '.join(missing)}: install the Debian package(s) "
                             f"(apt-get install {' '.join(missing)}) or run this script as root to have it do so")
        print(f"installing {' '.join(missing)} with apt-get ...", file=sys.stderr, flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
        if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
                raise BenchError(f"apt-get could not install {' '.join(missing)}")
    found = {tool: shutil.which(tool) for tool in wanted}
    absent = [tool for tool, path in found.items() if path is None]
    if absent:
        raise BenchError(f"{', '.join(absent)} still not on PATH after installing")
    return {tool: str(path) for tool, path in found.items()}


@contextmanager
def keychain_cluster(http_port: int, base_port: int, verbose: bool, tls: bool = False,
                     proxies: int = 1) -> Iterator[Target]:
    """`keychain up` (`--tls` with `tls`) on a temporary data dir; yields once it prints its ready line.

    With `proxies` above 1, that many more proxies of the same cluster are started beside the one
    `keychain up` runs (on the HTTP ports after `http_port`), and the Target lists them all.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="keychain-bench-"))
    argv = [sys.executable, "-P", "-m", "keychain", "up", "--data-dir", str(data_dir),
            "--http-port", str(http_port), "--base-port", str(base_port), *(["--tls"] if tls else [])]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: deque[str] = deque(maxlen=50)
    ready = threading.Event()

    def drain() -> None:  # keeps the pipe empty for as long as the cluster runs
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            if verbose:
                print(f"  [keychain up] {line}", file=sys.stderr, flush=True)
            if re.search(r"\bready\b", line):
                ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    ok = False
    try:
        deadline = time.monotonic() + KEYCHAIN_READY_TIMEOUT
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {proc.returncode}" if proc.poll() is not None else \
                    f"printed no ready line within {KEYCHAIN_READY_TIMEOUT:.0f}s"
                tail = "\n    ".join(list(lines)[-15:]) or "(no output)"
                raise BenchError(f"keychain up {why}; its last output:\n    {tail}\n"
                                 f"  data and logs kept in {data_dir}")
        ok = True
        if not tls:
            cluster = json.loads((data_dir / "cluster.json").read_text())
            members = checked_members(member_cpu.member_pids(cluster), proc.pid)
            with extra_proxies(cluster, proxies - 1, http_port + 2, data_dir) as extra:
                urls = [f"http://127.0.0.1:{http_port}", *(url for url, _ in extra)]
                members |= {f"proxy-{i + 2}": p.pid for i, (_, p) in enumerate(extra)}
                yield Target("keychain", urls[0], [proc.pid, *(p.pid for _, p in extra)],
                             spread_urls=urls, members=members)
        else:
            files = json.loads((data_dir / "cluster.json").read_text())["tls"]
            client_tls = {"cacert": files["ca"], "cert": files["cert"], "key": files["key"]}
            yield Target("keychain", f"https://127.0.0.1:{http_port}", [proc.pid], client_tls)
    finally:
        stop_process(proc)
        reader.join(5)
        if ok:
            shutil.rmtree(data_dir, ignore_errors=True)


def checked_members(members: dict[str, int], supervisor: int) -> dict[str, int]:
    """The members `keychain up` started, each checked to be its child (a pid in cluster.json is its own)."""
    for name, pid in members.items():
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            parent = None
        if parent != supervisor:
            raise BenchError(f"cluster.json names pid {pid} for {name}, which is not a child of keychain up")
    return members


PROXY_READY_TIMEOUT = 30.0


@contextmanager
def extra_proxies(cluster: dict, count: int, first_port: int,
                  data_dir: Path) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    """`count` more `keychain proxy` processes of the cluster, on HTTP ports first_port, first_port+2, ..."""
    coordinators = ",".join(c["address"] for c in cluster["components"] if c["kind"] == "coordinator")
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for i in range(count):
            port = first_port + 2 * i
            if busy_ports([port, port + 1]):
                raise BenchError(f"ports {port} and {port + 1} for an extra proxy are in use (choose --keychain-port)")
            log = (data_dir / f"extra-proxy-{i + 2}.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "keychain", "proxy", "--listen", f"127.0.0.1:{port}",
                 "--grpc", f"127.0.0.1:{port + 1}", "--coordinator", coordinators, "--chain", cluster["chain"],
                 "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            started.append((f"http://127.0.0.1:{port}", proc))
        for url, proc in started:
            wait_for_proxy(url, proc)
        yield started
    finally:
        for _, proc in started:
            stop_process(proc)


def wait_for_proxy(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Until the proxy serves a strong read (of a key that need not exist)."""
    client = KVClient("keychain", url, timeout=2.0)
    deadline = time.monotonic() + PROXY_READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the extra proxy at {url} exited with {proc.returncode}")
        try:
            client.get("bench-proxy-ready")
            return
        except (BenchError, OSError, http.client.HTTPException):
            time.sleep(0.2)
    raise BenchError(f"the extra proxy at {url} served no read within {PROXY_READY_TIMEOUT:.0f}s")


def etcd_env() -> dict[str, str]:
    # etcd reads ETCD_* variables too, and refuses a setting given both ways.
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}


@contextmanager
def etcd_cluster(etcd: str, base_port: int, verbose: bool) -> Iterator[Target]:
    """A 3-member etcd cluster on loopback ports, data in a temporary dir; yields its leader."""
    client_ports = [base_port + i for i in range(ETCD_MEMBERS)]
    peer_ports = [base_port + 10 + i for i in range(ETCD_MEMBERS)]
    busy = busy_ports(client_ports + peer_ports)
    if busy:
        raise BenchError(f"etcd ports already in use: {', '.join(map(str, busy))} (choose --etcd-port)")
    work = Path(tempfile.mkdtemp(prefix="etcd-bench-"))
    names = [f"m{i + 1}" for i in range(ETCD_MEMBERS)]
    initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peer_ports, strict=True))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, client, peer in zip(names, client_ports, peer_ports, strict=True):
            log = (work / f"{name}.log").open("wb")
            procs.append(subprocess.Popen(
                [etcd, "--name", name, "--data-dir", str(work / name),
                 "--listen-client-urls", f"http://127.0.0.1:{client}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", f"bench-{os.getpid()}",
                 "--logger", "zap", "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, env=etcd_env()))
            log.close()
        urls = [f"http://127.0.0.1:{p}" for p in client_ports]
        leader = wait_for_etcd_leader(urls, procs, work)
        if verbose:
            print(f"  [etcd] 3 members up, leader {leader}", file=sys.stderr, flush=True)
        yield Target("etcd", leader, [p.pid for p in procs], spread_urls=urls,
                     members={name: p.pid for name, p in zip(names, procs, strict=True)})
    finally:
        for p in procs:
            stop_process(p)
        shutil.rmtree(work, ignore_errors=True)


def wait_for_etcd_leader(urls: list[str], procs: list[subprocess.Popen[bytes]], work: Path) -> str:
    """The client URL of the member that leads, once every member answers with the same leader."""
    deadline = time.monotonic() + ETCD_READY_TIMEOUT
    while time.monotonic() < deadline:
        for p, url in zip(procs, urls, strict=True):
            if p.poll() is not None:
                log = (work / f"m{urls.index(url) + 1}.log").read_text(errors="replace")[-2000:]
                raise BenchError(f"etcd member at {url} exited with {p.returncode}:\n{log}")
        try:
            statuses = [etcd_status(url) for url in urls]
        except (OSError, http.client.HTTPException, ValueError):
            time.sleep(0.2)
            continue
        leaders = {s.get("leader") for s in statuses}
        if len(leaders) == 1 and None not in leaders and "0" not in leaders:
            (leader_id,) = leaders
            for url, s in zip(urls, statuses, strict=True):
                if s.get("header", {}).get("member_id") == leader_id:
                    return url
        time.sleep(0.2)
    raise BenchError(f"etcd elected no leader within {ETCD_READY_TIMEOUT:.0f}s")


def etcd_status(url: str) -> dict:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=2)
    try:
        conn.request("POST", "/v3/maintenance/status", body=b"{}", headers=JSON_HEADERS)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise ValueError(f"status {resp.status}")
        return json.loads(body)
    finally:
        conn.close()


# ---- one measured phase ----


@dataclass
class PhaseResult:
    duration_s: float
    requests: int
    errors: dict[str, int]
    latency_ms: dict[str, float]
    server_cores: float | None  # average CPU cores the system under test used
    wrk_cores: float
    other_cores: float | None  # what everything else on the machine used meanwhile: contention
    members: dict[str, tuple[float, float]] = field(default_factory=dict)  # --member-cpu: cores, capped share
    endpoints: int = 1  # how many endpoints wrk spread its connections over

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def ok_per_second(self) -> float:
        # wrk counts an answered request with a 4xx/5xx status in `requests` as well.
        return max(0, self.requests - self.errors.get("status", 0)) / self.duration_s

    def to_json(self) -> dict[str, object]:
        return {"ops_per_s": round(self.ok_per_second, 1), "requests": self.requests, "errors": self.errors,
                "duration_s": round(self.duration_s, 3), "latency_ms": self.latency_ms,
                "server_cpu_cores": None if self.server_cores is None else round(self.server_cores, 2),
                "wrk_cpu_cores": round(self.wrk_cores, 2),
                "other_cpu_cores": None if self.other_cores is None else round(self.other_cores, 2),
                "endpoints": self.endpoints,
                "members": {n: {"cores": round(c, 3), "capped_periods": round(t, 3)}
                            for n, (c, t) in self.members.items()}}


def parse_wrk_output(stdout: str) -> dict:
    """The JSON object of the BENCH_RESULT line that wrk_kv.lua's done() prints."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise BenchError(f"wrk printed no {RESULT_PREFIX.strip()} line; its output:\n{stdout[-2000:]}")


def phase_result(raw: dict, server_cpu: float | None, wrk_cpu: float, machine_cpu: float) -> PhaseResult:
    """A phase's figures from wrk's BENCH_RESULT object and the CPU seconds measured around it."""
    duration = raw["duration_us"] / 1e6
    if duration <= 0:
        raise BenchError("wrk reported a phase of zero duration")
    latency = {name: round(us / 1000, 3) for name, us in raw["latency_us"].items()}
    other = None if server_cpu is None else max(0.0, machine_cpu - server_cpu - wrk_cpu) / duration
    return PhaseResult(duration, int(raw["requests"]), {k: int(v) for k, v in raw["errors"].items()}, latency,
                       None if server_cpu is None else server_cpu / duration, wrk_cpu / duration, other)


def spread_shape(endpoints: int, threads: int, concurrency: int) -> tuple[int, int]:
    """wrk threads and connections for `endpoints` targets: the same threads and connections per target."""
    threads = endpoints * max(1, -(-threads // endpoints))
    return threads, max(threads, concurrency // threads * threads)


def run_phase(wrk: str, target: Target, phase: str, opts: argparse.Namespace, spread: bool = False,
              groups: member_cpu.MemberCgroups | None = None) -> PhaseResult:
    """One wrk run; `spread`: its threads split evenly over all of target.spread_urls."""
    threads, concurrency, env = opts.threads, opts.concurrency, None
    endpoints = target.spread_urls if spread and len(target.spread_urls) > 1 else [target.url]
    if len(endpoints) > 1:
        threads, concurrency = spread_shape(len(endpoints), threads, concurrency)
        env = {**os.environ, "WRK_KV_TARGETS": ",".join(urllib.parse.urlsplit(u).netloc for u in endpoints)}
    wrk_phase = "read" if phase.startswith("read") else phase
    argv = [wrk, "-t", str(threads), "-c", str(concurrency), "-d", f"{opts.duration:g}s",
            "--timeout", "10s", "-s", str(WRK_SCRIPT), endpoints[0], "--",
            target.system, wrk_phase, str(opts.keys), str(opts.value_size), str(threads)]
    pids = process_tree(target.pids) if target.pids else []
    server_before = cpu_seconds(pids) if pids else None
    wrk_before = children_cpu_seconds()
    machine_before = machine_busy_seconds()
    usage = member_cpu.Usage(groups) if groups is not None else None
    if usage is not None:
        usage.start()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=opts.duration + 60, env=env)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"wrk did not finish within {opts.duration + 60:g}s") from e
    if usage is not None:
        usage.stop()
    wrk_cpu = children_cpu_seconds() - wrk_before
    machine_cpu = machine_busy_seconds() - machine_before
    server_cpu = cpu_seconds(pids) - server_before if server_before is not None else None
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stderr[-2000:]}{done.stdout[-2000:]}")
    if opts.verbose:
        print(done.stdout, file=sys.stderr, flush=True)
    result = phase_result(parse_wrk_output(done.stdout), server_cpu, wrk_cpu, machine_cpu)
    result.endpoints = len(endpoints)
    if usage is not None:
        result.members = {n: (c, usage.throttled_share.get(n, 0.0)) for n, c in usage.cores.items()}
    return result


def bench_system(wrk: str, target: Target, opts: argparse.Namespace,
                 groups: member_cpu.MemberCgroups | None = None) -> dict[str, PhaseResult]:
    """The write phase, then reads spread over every endpoint and, with several, reads at one alone."""
    label = LABELS[target.system]
    client = KVClient(target.system, target.url)
    say(f"{label}: write phase, {opts.duration:g}s at {opts.concurrency} connections ...")
    results = {"write": run_phase(wrk, target, "write", opts, groups=groups)}
    warn_if_contended(label, "write", results["write"])
    check_values(client, keys_sent_first(opts.keys, opts.threads), opts.value_size)
    seconds = prefill(client, opts.keys, opts.value_size, min(opts.concurrency, 16))
    say(f"{label}: {opts.keys} keys written in {seconds:.1f}s; read phase ...")
    check_values(client, [key_name(i) for i in range(0, opts.keys, max(1, opts.keys // 20))], opts.value_size)
    many = len(target.spread_urls) > 1
    if many:
        say(f"{label}: reads spread over {len(target.spread_urls)} endpoints ...")
    results["read"] = run_phase(wrk, target, "read", opts, spread=True, groups=groups)
    warn_if_contended(label, "read", results["read"])
    if many:
        say(f"{label}: reads at {target.url} alone ...")
        results["read-one"] = run_phase(wrk, target, "read-one", opts, groups=groups)
        warn_if_contended(label, "read-one", results["read-one"])
    return results


CONTENDED_CORES = 0.25  # other processes' CPU during a phase above which its figures are suspect


def warn_if_contended(label: str, phase: str, result: PhaseResult) -> None:
    if result.other_cores is not None and result.other_cores > CONTENDED_CORES:
        say(f"{label}: note: other processes used {result.other_cores:.2f} cores during the {phase} phase; "
            "its figures are lower than on a quiet machine")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- the report ----


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def phase_of(res: dict[str, PhaseResult], phase: str) -> PhaseResult | None:
    """A system's phase; reads at one endpoint are its spread reads when it had only one endpoint."""
    if phase == "read-one" and "read-one" not in res and "read" in res and res["read"].endpoints == 1:
        return res["read"]
    return res.get(phase)


def report_rows(results: dict[str, dict[str, PhaseResult]]) -> list[tuple[str, dict[str, float | None]]]:
    rows: list[tuple[str, dict[str, float | None]]] = []
    getters: list[tuple[str, str, Callable[[PhaseResult], float | None]]] = [
        ("writes/s", "write", lambda r: r.ok_per_second),
        ("write p50 ms", "write", lambda r: r.latency_ms["p50"]),
        ("write p99 ms", "write", lambda r: r.latency_ms["p99"]),
        ("reads/s", "read", lambda r: r.ok_per_second),
        ("read p50 ms", "read", lambda r: r.latency_ms["p50"]),
        ("read p99 ms", "read", lambda r: r.latency_ms["p99"]),
        ("reads/s, one endpoint", "read-one", lambda r: r.ok_per_second),
        ("read p50 ms, one endpoint", "read-one", lambda r: r.latency_ms["p50"]),
        ("read p99 ms, one endpoint", "read-one", lambda r: r.latency_ms["p99"]),
        ("write errors", "write", lambda r: r.failed),
        ("read errors", "read", lambda r: r.failed),
        ("server CPU, writes (cores)", "write", lambda r: r.server_cores),
        ("server CPU, reads (cores)", "read", lambda r: r.server_cores),
        ("wrk CPU, writes (cores)", "write", lambda r: r.wrk_cores),
        ("wrk CPU, reads (cores)", "read", lambda r: r.wrk_cores),
        ("other CPU, writes (cores)", "write", lambda r: r.other_cores),
        ("other CPU, reads (cores)", "read", lambda r: r.other_cores),
    ]
    for name, phase, get in getters:
        values = {system: None if (r := phase_of(res, phase)) is None else get(r) for system, res in results.items()}
        if phase != "read-one" or any("read-one" in res for res in results.values()):
            rows.append((name, values))
    return rows


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def render_table(results: dict[str, dict[str, PhaseResult]]) -> str:
    systems = [s for s in SYSTEMS if s in results]
    both = len(systems) == 2
    header = ["", *(LABELS[s] for s in systems)] + (["KeychainDB/etcd"] if both else [])
    lines = [header]
    for name, values in report_rows(results):
        row = [name, *(fmt(values[s]) for s in systems)]
        if both:
            r = ratio(values["keychain"], values["etcd"])
            row.append("-" if r is None or "errors" in name else f"{r:.2f}x")
        lines.append(row)
    return aligned(lines)


def aligned(rows: list[list[str]]) -> str:
    """A text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in rows
    )


def summary_json(results: dict[str, dict[str, PhaseResult]], opts: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {
        "benchmark": "keychain-vs-etcd",
        "config": {"duration_s": opts.duration, "concurrency": opts.concurrency, "value_size": opts.value_size,
                   "keys": opts.keys, "threads": opts.threads, "load_generator": "wrk",
                   "member_cpu": opts.member_cpu, "proxies": opts.proxies},
        "results": {s: {p: r.to_json() for p, r in res.items()} for s, res in results.items()},
    }
    if "keychain" in results and "etcd" in results:
        k, e = results["keychain"], results["etcd"]
        out["ratios"] = {
            "writes_per_s": round(ratio(k["write"].ok_per_second, e["write"].ok_per_second) or 0, 3),
            "reads_per_s": round(ratio(k["read"].ok_per_second, e["read"].ok_per_second) or 0, 3),
            "write_p50": round(ratio(k["write"].latency_ms["p50"], e["write"].latency_ms["p50"]) or 0, 3),
            "write_p99": round(ratio(k["write"].latency_ms["p99"], e["write"].latency_ms["p99"]) or 0, 3),
            "read_p50": round(ratio(k["read"].latency_ms["p50"], e["read"].latency_ms["p50"]) or 0, 3),
            "read_p99": round(ratio(k["read"].latency_ms["p99"], e["read"].latency_ms["p99"]) or 0, 3),
        }
        k_one, e_one = phase_of(k, "read-one"), phase_of(e, "read-one")
        if k_one is not None and e_one is not None and "read-one" in k | e:  # one proxy against etcd's leader
            out["ratios"]["reads_per_s_one_endpoint"] = round(ratio(k_one.ok_per_second, e_one.ok_per_second) or 0, 3)
    return out


# ---- command line ----


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark KeychainDB against a 3-member etcd cluster over HTTP.")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=64, help="open connections (default: %(default)s)")
    p.add_argument("--value-size", type=int, default=100, help="bytes per value (default: %(default)s)")
    p.add_argument("--keys", type=int, default=10000, help="size of the key space (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default: %(default)s)")
    p.add_argument("--only", choices=SYSTEMS, help="benchmark one system only")
    p.add_argument("--keychain-url", help="use this running KeychainDB proxy instead of starting `keychain up`")
    p.add_argument("--keychain-port", type=int, default=18080, help="HTTP port of the started proxy (default: %(default)s)")
    p.add_argument("--keychain-base-port", type=int, default=17000,
                   help="`keychain up --base-port` for the started cluster (default: %(default)s)")
    p.add_argument("--etcd-port", type=int, default=22379,
                   help="etcd client ports are this and the next two; peer ports start 10 above (default: %(default)s)")
    p.add_argument("--member-cpu", type=float, metavar="C",
                   help="one machine per member: every member of both systems in its own cgroup capped at C CPUs "
                        "(needs root and the cgroup cpu controller)")
    p.add_argument("--proxies", type=int, default=1,
                   help="KeychainDB proxies; above 1, more are started beside keychain up's and reads are spread "
                        "over all of them, then sent to one alone (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="show the clusters' output and wrk's own report")
    opts = p.parse_args(argv)
    if not 0 < opts.duration <= MAX_DURATION:
        p.error(f"--duration must be in (0, {MAX_DURATION:g}] seconds")
    if opts.concurrency < 1 or opts.value_size < 1 or opts.keys < 1 or opts.threads < 1:
        p.error("--concurrency, --value-size, --keys and --threads must be positive")
    if opts.threads > opts.concurrency:
        p.error("--threads must not exceed --concurrency (each wrk thread needs a connection)")
    if opts.concurrency % opts.threads:
        p.error("--concurrency must be a multiple of --threads (wrk splits connections evenly)")
    if opts.keychain_url and not re.match(r"^http://[^/]+/?$", opts.keychain_url):
        p.error("--keychain-url must look like http://HOST:PORT")
    if opts.keychain_url and opts.only == "etcd":
        p.error("--keychain-url makes no sense with --only etcd")
    if opts.member_cpu is not None and not opts.member_cpu > 0:
        p.error("--member-cpu must be above 0")
    if opts.keychain_url and (opts.member_cpu is not None or opts.proxies != 1):
        p.error("--member-cpu and --proxies need the cluster this script starts, not --keychain-url")
    if not 1 <= opts.proxies <= 8:
        p.error("--proxies must be between 1 and 8")
    return opts


def render_members(results: dict[str, dict[str, PhaseResult]], cpus: float) -> str:
    """Per system and phase, the cores each member used against its cap of `cpus`."""
    out = []
    for system in SYSTEMS:
        for phase, r in results.get(system, {}).items():
            if r.members:
                out.append(f"{LABELS[system]}, {phase} phase ({r.endpoints} endpoint{'s' if r.endpoints > 1 else ''}):")
                out += member_cpu.usage_lines(cpus, {n: c for n, (c, _) in r.members.items()},
                                              {n: t for n, (_, t) in r.members.items()})
    return "\n".join(out)


def bench_in_groups(system: str, tools: dict[str, str], opts: argparse.Namespace) -> dict[str, PhaseResult]:
    """Start `system`, with every member in its own capped cgroup under --member-cpu, and benchmark it."""
    with contextlib.ExitStack() as stack:
        groups = None
        if opts.member_cpu is not None:
            groups = stack.enter_context(member_cpu.MemberCgroups(opts.member_cpu))
        if system == "keychain":
            say("starting KeychainDB (keychain up" + (f" and {opts.proxies - 1} more proxies" if opts.proxies > 1
                                                      else "") + ") ...")
            target = stack.enter_context(keychain_cluster(opts.keychain_port, opts.keychain_base_port, opts.verbose,
                                                          proxies=opts.proxies))
        else:
            say(f"starting a {ETCD_MEMBERS}-member etcd cluster ...")
            target = stack.enter_context(etcd_cluster(tools["etcd"], opts.etcd_port, opts.verbose))
        if groups is not None:
            for name, pid in target.members.items():
                groups.add(name, [pid])
            say(f"{LABELS[system]}: {len(target.members)} members, each capped at {opts.member_cpu:g} CPU")
        return bench_system(tools["wrk"], target, opts, groups)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    load_before = os.getloadavg()
    try:
        if opts.member_cpu is not None:
            member_cpu.detect()  # refuse before starting anything when caps cannot be set here
        tools = ensure_tools(["wrk"] if opts.only == "keychain" else ["wrk", "etcd"])
        results: dict[str, dict[str, PhaseResult]] = {}
        if opts.only != "etcd":
            if opts.keychain_url:
                results["keychain"] = bench_system(tools["wrk"], Target("keychain", opts.keychain_url.rstrip("/")), opts)
            else:
                results["keychain"] = bench_in_groups("keychain", tools, opts)
        if opts.only != "keychain":
            results["etcd"] = bench_in_groups("etcd", tools, opts)
    except member_cpu.MemberCpuError as e:
        print(f"vs_etcd: --member-cpu: {e}", file=sys.stderr)
        return 2
    except BenchError as e:
        print(f"vs_etcd: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vs_etcd: interrupted; the clusters and cgroups it started are gone", file=sys.stderr)
        return 130
    load_after = os.getloadavg()
    caps = f", every member capped at {opts.member_cpu:g} CPU" if opts.member_cpu is not None else ", shared cores"
    print(f"\n{opts.concurrency} connections, {opts.value_size}-byte values, {opts.keys} keys, "
          f"{opts.duration:g}s per phase, wrk with {opts.threads} threads{caps}")
    print("reads/s: spread over every endpoint (etcd: its 3 members, as its client balancer does; KeychainDB: "
          f"its {opts.proxies} prox{'ies' if opts.proxies > 1 else 'y'}); one endpoint: etcd's leader, "
          "KeychainDB's first proxy\n")
    print(render_table(results))
    if opts.member_cpu is not None:
        print("\nCPU each member used (cores, from its cgroup), against its cap:")
        print(render_members(results, opts.member_cpu))
    print(f"\nload average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(json.dumps(summary_json(results, opts) | {"load_average": [load_before[0], load_after[0]]},
                     separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
