"""The multi-key API benchmark runs end to end, tiny, against the proxy in front of the chain double:
every phase produces its figures (the real ones come from running it by hand on `keychain up`)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

# The chain double and the proxy runner live with the proxy tests; share them, not copy them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))

from proxy_double import ChainDouble
from proxy_harness import running_proxy

BENCH = Path(__file__).resolve().parents[2] / "bench" / "api_bench.py"
spec = importlib.util.spec_from_file_location("bench_api", BENCH)
assert spec and spec.loader
api_bench = importlib.util.module_from_spec(spec)
sys.modules["bench_api"] = api_bench
spec.loader.exec_module(api_bench)


def test_every_phase_reports_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    with ChainDouble(members=3) as chain, running_proxy(chain) as proxy:
        argv = ["--url", proxy.url, "--duration", "0.3", "--keys", "30", "--limits", "10",
                "--concurrency", "2", "--watchers", "3", "--watch-writes", "5"]
        assert api_bench.main(argv) == 0
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    assert len(figures["range"]) == 3  # each node
    assert all(r["ranges_per_s"] > 0 and r["errors"] == 0 for r in figures["range"].values())
    assert figures["txn"]["txns_per_s"] > 0 and figures["txn"]["compare_failed"] == 0 == figures["txn"]["errors"]
    assert figures["watch"]["events"] == 3 * 5
    assert "load average" in out


def test_the_txn_phase_alone_compares_the_load_generator_with_the_python_client(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with ChainDouble(members=3) as chain, running_proxy(chain) as proxy:
        argv = ["--url", proxy.url, "--duration", "0.3", "--concurrency", "2", "--phases", "txn", "--txn-client", "both"]
        assert api_bench.main(argv) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "range" not in figures and "watch" not in figures
    for sender in ("txn", "txn_keychain_client"):
        assert figures[sender]["txns_per_s"] > 0
        assert figures[sender]["compare_failed"] == 0 == figures[sender]["errors"]
