"""The KeychainDB-vs-etcd benchmark's own logic: its two HTTP dialects, its checks and its report.

The measured load comes from wrk and real clusters, which these tests do not start; what they pin
down is what the driver sends and believes: the etcd JSON gateway's base64 encoding, KeychainDB's
raw-body routes, the read-back check that catches a wrong value, and the figures in the table.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "vs_etcd.py"
spec = importlib.util.spec_from_file_location("bench_vs_etcd", BENCH)
assert spec and spec.loader
vs_etcd = importlib.util.module_from_spec(spec)
sys.modules["bench_vs_etcd"] = vs_etcd  # dataclasses look their module up by name
spec.loader.exec_module(vs_etcd)


class FakeStore(BaseHTTPRequestHandler):
    """Both systems' HTTP APIs over one dict, as far as the benchmark uses them."""

    store: dict[bytes, bytes] = {}
    requests_seen: list[tuple[str, str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        self.requests_seen.append(("PUT", self.path))
        key = self.path.removeprefix("/v1/kv/").encode()
        self.store[key] = self.body()
        self.reply(200, json.dumps({"key": key.decode(), "version": len(self.store)}).encode())

    def do_GET(self) -> None:
        self.requests_seen.append(("GET", self.path))
        key = self.path.removeprefix("/v1/kv/").split("?")[0].encode()
        if key in self.store:
            self.reply(200, self.store[key])
        else:
            self.reply(404, b'{"error":"not_found","message":"no such key"}')

    def do_POST(self) -> None:
        self.requests_seen.append(("POST", self.path))
        req = json.loads(self.body())
        key = base64.b64decode(req["key"])
        if self.path == "/v3/kv/put":
            self.store[key] = base64.b64decode(req["value"])
            self.reply(200, b'{"header":{"revision":"2"}}')
        elif self.path == "/v3/kv/range":
            kvs = [{"key": req["key"], "value": base64.b64encode(self.store[key]).decode()}] if key in self.store else []
            self.reply(200, json.dumps({"header": {}, "kvs": kvs, "count": str(len(kvs))}).encode())
        else:
            self.reply(404, b"{}")


@pytest.fixture
def fake_server() -> Iterator[str]:
    FakeStore.store, FakeStore.requests_seen = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeStore)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_values_are_the_key_repeated_to_the_asked_size():
    assert vs_etcd.key_name(42) == "bench-00000042"
    value = vs_etcd.value_for("bench-00000042", 40)
    assert value == b"bench-00000042/bench-00000042/bench-0000"
    assert len(vs_etcd.value_for("bench-00000001", 100)) == 100


def test_each_wrk_thread_starts_at_its_own_slice_of_the_key_space():
    assert vs_etcd.thread_start_keys(10_000, 2) == ["bench-00000000", "bench-00005000"]


@pytest.mark.process
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_write_phase_check_asks_only_for_keys_wrk_sent(fake_server: str):
    # wrk swallows the first thread's first request (it verifies the script with it).
    # A key space too large to wrap around in one second, so no key is written twice.
    argv = ["wrk", "-t", "2", "-c", "2", "-d", "1s", "-s", str(vs_etcd.WRK_SCRIPT), fake_server, "--",
            "keychain", "write", "40000", "16", "2"]
    subprocess.run(argv, capture_output=True, check=True, timeout=60)
    written = {key.decode() for key in FakeStore.store}
    assert len(written) < 20_000
    assert set(vs_etcd.keys_sent_first(40_000, 2)) <= written
    vs_etcd.check_values(vs_etcd.KVClient("keychain", fake_server), vs_etcd.keys_sent_first(40_000, 2), 16)


@pytest.mark.parametrize("system", ["keychain", "etcd"])
def test_prefill_writes_every_key_and_reads_them_back(fake_server: str, system: str):
    client = vs_etcd.KVClient(system, fake_server)
    vs_etcd.prefill(client, keys=50, value_size=30, workers=4)
    assert len(FakeStore.store) == 50
    assert FakeStore.store[b"bench-00000049"] == vs_etcd.value_for("bench-00000049", 30)
    vs_etcd.check_values(client, [vs_etcd.key_name(i) for i in range(50)], 30)


def test_keychain_reads_are_strong_and_etcd_goes_through_the_v3_gateway(fake_server: str):
    vs_etcd.KVClient("keychain", fake_server).get("bench-00000001")
    vs_etcd.KVClient("etcd", fake_server).get("bench-00000001")
    assert FakeStore.requests_seen == [("GET", "/v1/kv/bench-00000001?consistency=strong"), ("POST", "/v3/kv/range")]


@pytest.mark.parametrize("system", ["keychain", "etcd"])
def test_a_missing_or_wrong_value_stops_the_benchmark(fake_server: str, system: str):
    client = vs_etcd.KVClient(system, fake_server)
    with pytest.raises(vs_etcd.BenchError, match="reads back None"):
        vs_etcd.check_values(client, ["bench-00000007"], 20)
    client.put("bench-00000007", b"something else")
    with pytest.raises(vs_etcd.BenchError, match="reads back b'something else'"):
        vs_etcd.check_values(client, ["bench-00000007"], 20)


def wrk_line(requests: int, status_errors: int, p50_us: int, p99_us: int) -> str:
    raw = {"duration_us": 2_000_000, "requests": requests, "bytes": 1,
           "errors": {"connect": 0, "read": 0, "write": 0, "status": status_errors, "timeout": 0},
           "latency_us": {"min": 1, "mean": 2.0, "p50": p50_us, "p90": p99_us, "p99": p99_us, "p999": p99_us,
                          "max": p99_us}}
    return "Running 2s test @ http://127.0.0.1:1\n" + vs_etcd.RESULT_PREFIX + json.dumps(raw) + "\n"


def test_answers_with_an_error_status_do_not_count_as_throughput():
    raw = vs_etcd.parse_wrk_output(wrk_line(requests=10_000, status_errors=2_000, p50_us=1500, p99_us=9000))
    result = vs_etcd.phase_result(raw, server_cpu=3.0, wrk_cpu=0.5, machine_cpu=4.0)
    assert result.ok_per_second == 4000
    assert result.failed == 2000
    assert result.latency_ms["p50"] == 1.5
    assert (result.server_cores, result.wrk_cores, result.other_cores) == (1.5, 0.25, 0.25)


def test_wrk_output_without_the_result_line_is_an_error():
    with pytest.raises(vs_etcd.BenchError, match="no BENCH_RESULT line"):
        vs_etcd.parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_the_table_sets_keychain_against_etcd_with_ratios():
    def phase(requests: int, p50: int, p99: int) -> object:
        return vs_etcd.phase_result(vs_etcd.parse_wrk_output(wrk_line(requests, 0, p50, p99)), None, 0.2, 1.0)

    results = {"keychain": {"write": phase(4000, 2000, 8000), "read": phase(60000, 500, 2000)},
               "etcd": {"write": phase(10000, 4000, 16000), "read": phase(40000, 1000, 4000)}}
    table = vs_etcd.render_table(results)
    assert table.splitlines()[0].split() == ["KeychainDB", "etcd", "KeychainDB/etcd"]
    rows = {line[:28].strip(): line[28:].split() for line in table.splitlines()[1:]}
    assert rows["writes/s"] == ["2,000", "5,000", "0.40x"]
    assert rows["reads/s"] == ["30,000", "20,000", "1.50x"]
    assert rows["write p99 ms"] == ["8.00", "16.00", "0.50x"]
    ratios = vs_etcd.summary_json(results, vs_etcd.parse_args([]))["ratios"]
    assert ratios["reads_per_s"] == 1.5 and ratios["read_p50"] == 0.5


@pytest.mark.parametrize("argv, complaint", [
    (["--duration", "0"], "--duration"),
    (["--duration", "1000"], "--duration"),
    (["--concurrency", "63"], "multiple of --threads"),
    (["--keys", "0"], "must be positive"),
    (["--keychain-url", "localhost:8080"], "--keychain-url"),
    (["--only", "etcd", "--keychain-url", "http://127.0.0.1:8080"], "makes no sense"),
])
def test_bad_options_are_refused_with_a_reason(argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        vs_etcd.parse_args(argv)
    assert complaint in capsys.readouterr().err


def test_spread_reads_give_every_endpoint_the_same_threads_and_connections():
    assert vs_etcd.spread_shape(endpoints=3, threads=2, concurrency=64) == (3, 63)
    assert vs_etcd.spread_shape(endpoints=3, threads=4, concurrency=64) == (6, 60)
    assert vs_etcd.spread_shape(endpoints=2, threads=2, concurrency=64) == (2, 64)


def test_one_endpoint_rows_appear_only_when_reads_were_also_sent_to_one_endpoint_alone():
    def phase(requests: int) -> object:
        return vs_etcd.phase_result(vs_etcd.parse_wrk_output(wrk_line(requests, 0, 1000, 2000)), None, 0.2, 1.0)

    plain = {"keychain": {"write": phase(2000), "read": phase(8000)}}
    assert "one endpoint" not in vs_etcd.render_table(plain)
    both = {"keychain": {"write": phase(2000), "read": phase(8000)},
            "etcd": {"write": phase(4000), "read": phase(12000), "read-one": phase(6000)}}
    rows = {line[:28].strip(): line[28:].split() for line in vs_etcd.render_table(both).splitlines()[1:]}
    assert rows["reads/s"] == ["4,000", "6,000", "0.67x"], "spread reads: KeychainDB's one proxy, etcd's 3 members"
    assert rows["reads/s, one endpoint"] == ["4,000", "3,000", "1.33x"], "a single proxy is its own one endpoint"
    ratios = vs_etcd.summary_json(both, vs_etcd.parse_args([]))["ratios"]
    assert ratios["reads_per_s_one_endpoint"] == round(4000 / 3000, 3)


def test_member_caps_need_the_cluster_this_script_starts(capsys: pytest.CaptureFixture[str]):
    for argv in (["--member-cpu", "0"], ["--proxies", "0"],
                 ["--member-cpu", "0.5", "--keychain-url", "http://127.0.0.1:8080"]):
        with pytest.raises(SystemExit):
            vs_etcd.parse_args(argv)
    assert "--keychain-url" in capsys.readouterr().err
