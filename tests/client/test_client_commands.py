"""The client commands of the CLI: put/get/delete, status and bench, against the real proxy."""

from __future__ import annotations

import subprocess
import sys

import pytest
from proxy_double import ChainDouble
from proxy_harness import RunningProxy

from keychain import commands

KEYCHAIN = [sys.executable, "-P", "-m", "keychain"]


def test_put_from_stdin_then_get_and_delete_through_the_cli(proxy: RunningProxy, chain: ChainDouble):
    put = subprocess.run(
        [*KEYCHAIN, "put", "greeting", "--url", proxy.url], input=b"hello\x00world", capture_output=True
    )
    assert put.returncode == 0, put.stderr
    assert put.stdout.strip() == b"1"
    got = subprocess.run([*KEYCHAIN, "get", "greeting"], env={"KEYCHAIN_URL": proxy.url}, capture_output=True)
    assert got.returncode == 0 and got.stdout == b"hello\x00world", "raw bytes, untouched"
    gone = subprocess.run([*KEYCHAIN, "delete", "greeting", "--url", proxy.url], capture_output=True)
    assert gone.returncode == 0
    missing = subprocess.run([*KEYCHAIN, "get", "greeting", "--url", proxy.url], capture_output=True)
    assert missing.returncode == commands.EXIT_NOT_FOUND and b"not found" in missing.stderr


def test_conditional_put_and_its_failure(proxy: RunningProxy, capsys: pytest.CaptureFixture[str]):
    assert commands.main(["put", "k", "v1", "--url", proxy.url]) == 0
    assert commands.main(["put", "k", "v2", "--if-version", "1", "--url", proxy.url]) == 0
    assert commands.main(["put", "k", "v3", "--if-version", "1", "--url", proxy.url]) == commands.EXIT_FAILED
    assert commands.main(["put", "k", "v4", "--if-absent", "--url", proxy.url]) == commands.EXIT_FAILED
    err = capsys.readouterr().err
    assert "precondition failed (current version 2)" in err


def test_status_shows_the_chain_head_to_tail_and_the_coordinator(
    proxy: RunningProxy,
    chain: ChainDouble,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("COLUMNS", "160")
    commands.main(["put", "a", "1", "--url", proxy.url])
    commands.main(["get", "a", "--url", proxy.url])
    capsys.readouterr()
    assert commands.main(["status", "--url", proxy.url]) == 0
    out = capsys.readouterr().out
    assert "chain test  epoch 1  node-1 -> node-2 -> node-3" in out
    assert "leader coord-1" in out
    for member in ("node-1", "node-2", "node-3"):
        assert chain.member(member).address in out
    lines = [line for line in out.splitlines() if "node-" in line and "127.0.0.1" in line]
    assert [("head" in lines[0]), ("middle" in lines[1]), ("tail" in lines[2])] == [True, True, True]
    assert all("healthy" in line for line in lines)


def test_bench_drives_a_bounded_mixed_load_and_reports_latency(
    proxy: RunningProxy,
    chain: ChainDouble,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("COLUMNS", "160")
    argv = [
        "bench",
        "--url",
        proxy.url,
        "--duration",
        "0.5",
        "--concurrency",
        "4",
        "--keys",
        "20",
        "--mix",
        "mixed",
    ]
    assert commands.main(argv) == 0
    out = capsys.readouterr().out
    assert "ops/s" in out and "p50 ms" in out and "p99 ms" in out
    assert "write" in out and "read" in out
    assert chain.state.seq >= 20, "the key space was preloaded, then written"
    assert sum(chain.state.reads.values()) > 0


def test_bench_refuses_unbounded_runs(proxy: RunningProxy):
    assert commands.main(["bench", "--url", proxy.url, "--duration", "100000"]) == commands.EXIT_USAGE
    assert commands.main(["bench", "--url", proxy.url, "--concurrency", "0"]) == commands.EXIT_USAGE


def test_an_unreachable_cluster_is_reported_not_a_traceback(capsys: pytest.CaptureFixture[str]):
    assert (
        commands.main(["get", "k", "--url", "http://127.0.0.1:1", "--timeout", "1"]) == commands.EXIT_FAILED
    )
    assert "unavailable" in capsys.readouterr().err
