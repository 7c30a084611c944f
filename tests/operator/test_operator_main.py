"""`keychain operator`: its command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from keychain.operator.main import parse_args


def test_the_defaults_watch_every_namespace_with_the_image_from_the_environment(monkeypatch):
    monkeypatch.setenv("KEYCHAIN_IMAGE", "keychaindb/keychain:0.1.0")
    args = parse_args([])
    assert (args.namespace, args.default_image, args.interval) == ([], "keychaindb/keychain:0.1.0", 10.0)


def test_namespaces_and_coordinator_urls_repeat():
    args = parse_args(["-n", "a", "--namespace", "b", "--coordinator-url", "http://127.0.0.1:7080"])
    assert args.namespace == ["a", "b"] and args.coordinator_url == ["http://127.0.0.1:7080"]


def test_a_non_positive_interval_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--interval", "0"])
    assert exit_info.value.code == 2
    assert "--interval and --retry-delay must be positive" in capsys.readouterr().err


def test_the_keychain_command_knows_the_operator():
    result = subprocess.run(
        [sys.executable, "-P", "-m", "keychain", "operator", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--default-image" in result.stdout
