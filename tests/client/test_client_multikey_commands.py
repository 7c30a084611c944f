"""`keychain list`, `keychain txn` and `keychain watch` against the real proxy."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from proxy_harness import RunningProxy

from keychain import commands
from keychain.client import Client

KEYCHAIN = [sys.executable, "-P", "-m", "keychain"]


def test_txn_from_stdin_then_list_as_json_lines(proxy: RunningProxy, capsys: pytest.CaptureFixture[str]):
    body = {
        "compare": [{"key": "cfg/a", "exists": False}],
        "success": [{"op": "put", "key": "cfg/a", "value": "alpha"}, {"op": "put", "key": "cfg/b", "value": "beta"}],
    }
    txn = subprocess.run([*KEYCHAIN, "txn", "-", "--url", proxy.url], input=json.dumps(body).encode(),
                         capture_output=True)
    assert txn.returncode == 0, txn.stderr
    reply = json.loads(txn.stdout)
    assert reply["succeeded"] is True and len(reply["results"]) == 2
    again = subprocess.run([*KEYCHAIN, "txn", "-", "--url", proxy.url], input=json.dumps(body).encode(),
                           capture_output=True)
    assert again.returncode == commands.EXIT_FAILED and json.loads(again.stdout)["succeeded"] is False
    assert commands.main(["list", "cfg/", "--json", "--limit", "1", "--url", proxy.url]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"key": "cfg/a", "value": "alpha", "version": reply["version"]},
        {"key": "cfg/b", "value": "beta", "version": reply["version"]},
    ]
    assert commands.main(["list", "cfg/", "--keys-only", "--url", proxy.url]) == 0
    table = capsys.readouterr().out
    assert "cfg/a" in table and "alpha" not in table


def test_a_malformed_txn_file_is_a_usage_error_and_a_bad_one_is_refused(
    proxy: RunningProxy, tmp_path, capsys: pytest.CaptureFixture[str]
):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert commands.main(["txn", str(broken), "--url", proxy.url]) == commands.EXIT_USAGE
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"success": [{"op": "upsert", "key": "x", "value": "y"}]}))
    assert commands.main(["txn", str(wrong), "--url", proxy.url]) == commands.EXIT_FAILED
    assert "invalid_request" in capsys.readouterr().err


def test_watch_prints_events_as_json_lines(proxy: RunningProxy):
    with Client(proxy.url) as kc:
        first = kc.put("feed/a", "1")
        kc.delete("feed/a")
    watch = subprocess.Popen(
        [*KEYCHAIN, "watch", "feed/", "--json", "--from-version", str(first), "--url", proxy.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    guard = threading.Timer(10, watch.kill)  # a watch that never prints must not hang the suite
    guard.start()
    try:
        assert watch.stdout is not None
        lines = [json.loads(watch.stdout.readline()) for _ in range(2)]
    finally:
        guard.cancel()
        watch.kill()
        watch.wait(5)
    assert lines == [
        {"type": "put", "key": "feed/a", "value": "1", "version": first},
        {"type": "delete", "key": "feed/a", "value": None, "version": first + 1},
    ]
