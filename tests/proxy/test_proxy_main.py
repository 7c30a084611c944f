"""`keychain proxy` as a process: its command line, startup and shutdown."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
from proxy_double import ChainDouble

KEYCHAIN = [sys.executable, "-P", "-m", "keychain"]


def test_the_proxy_command_serves_the_chain_and_stops_on_sigterm(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("letmein\n")
    with ChainDouble(members=2) as chain:
        process = subprocess.Popen(
            [
                *KEYCHAIN,
                "proxy",
                "--listen=127.0.0.1:0",
                "--grpc=127.0.0.1:0",
                f"--coordinator=127.0.0.1:1,{chain.coordinator}",  # the first member is down
                "--chain=test",
                f"--auth-token-file={token_file}",
                "--log-level=info",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = None
            deadline = time.monotonic() + 15
            while url is None and time.monotonic() < deadline:
                line = process.stderr.readline()
                assert line, "the proxy exited before serving"
                if match := re.search(r"serving http=(\S+)", line):
                    url = match.group(1)
            assert url, "no 'serving' line"
            headers = {"Authorization": "Bearer letmein"}
            for _ in range(200):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
                time.sleep(0.02)
            assert httpx.put(f"{url}/v1/kv/x", content=b"1", headers=headers).status_code == 200
            assert httpx.get(f"{url}/v1/kv/x", headers=headers).content == b"1"
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
            process.stderr.close()


def test_bad_arguments_are_refused_with_a_usage_message():
    missing = subprocess.run([*KEYCHAIN, "proxy", "--chain=c"], capture_output=True, text=True)
    assert missing.returncode == 2 and "--coordinator" in missing.stderr
    bad = subprocess.run(
        [*KEYCHAIN, "proxy", "--chain=c", "--coordinator=nohostport"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "host:port" in bad.stderr
