"""`keychain check-history FILE`: exit 0 linearizable, 1 not, 2 invalid input, 3 undecided."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HISTORIES = Path(__file__).parent / "histories"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "keychain", "check-history", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


def test_a_linearizable_history_exits_0():
    done = run(str(HISTORIES / "unknown_write_shows_up_late.jsonl"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "linearizable: 10 operations over 2 keys"


def test_a_stale_read_exits_1_naming_the_key_and_the_operations():
    done = run(str(HISTORIES / "stale_read.jsonl"))
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        "not linearizable: key 'x': no order of these 3 operations agrees with real time and the "
        "results (the key's history already fails by t=1.5):",
        "  c1 put '1' [1, 1.1] ok",
        "  c1 put '2' [1.2, 1.3] ok",
        "  c2 get -> '1' [1.4, 1.5] ok",
    ]


def test_an_invalid_line_exits_2_naming_the_line():
    path = HISTORIES / "invalid_line.jsonl"
    done = run(str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"{path}:3: 'status' must be one of ok, fail, unknown, got 'done'" in done.stderr


def test_text_that_is_not_json_exits_2_naming_the_line():
    done = run(
        "-", stdin='{"client": "c1", "op": "get", "key": "k", "start": 1, "end": 2, "status": "ok"}\n{oops\n'
    )
    assert done.returncode == 2
    assert "<stdin>:2: not valid JSON" in done.stderr


def test_a_missing_file_exits_2():
    done = run(str(HISTORIES / "no_such_history.jsonl"))
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_an_exhausted_search_budget_exits_3_and_says_so():
    done = run(str(HISTORIES / "concurrent_writes_read_in_either_order.jsonl"), "--max-steps", "1")
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith("unknown: search budget exhausted on key 'other'")


def test_ranges_transactions_and_watches_are_read_and_checked():
    done = run(str(HISTORIES / "multikey_snapshot_and_cas.jsonl"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "linearizable: 8 operations over 3 keys"


def test_a_range_that_sees_half_a_transaction_exits_1_naming_the_keys():
    done = run(str(HISTORIES / "range_sees_half_a_txn.jsonl"))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("not linearizable: keys ['cfg/a', 'cfg/b']: no order of these")
    assert "  c3 range ['cfg/', 'cfg0') -> {'cfg/a': 'a1', 'cfg/b': 'b0'} [0.7, 0.8] ok" in lines
