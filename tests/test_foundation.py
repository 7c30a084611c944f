"""The project's foundation: packaging maps the components into `keychain`, protos are fresh."""

import importlib
import subprocess
import sys

from keychain.proto import generate


def test_generated_protobuf_code_matches_the_proto_files():
    stale = generate.stale_files()
    assert stale == [], f"run `python -m keychain.proto.generate`; stale: {stale}"


def test_components_import_under_the_keychain_namespace_without_shadowing_the_stdlib():
    for name in ("keychain.node", "keychain.coordinator", "keychain.proxy", "keychain.operator"):
        importlib.import_module(name)
    import operator

    assert operator.add(2, 3) == 5, "the standard library's operator module must not be shadowed"


def test_the_cli_lists_its_commands_and_rejects_an_unknown_one():
    ok = subprocess.run([sys.executable, "-P", "-m", "keychain", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "up" in ok.stdout and "node" in ok.stdout
    bad = subprocess.run([sys.executable, "-P", "-m", "keychain", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_test_modules_have_unique_basenames():
    # tests/ folders are not packages (a package root on sys.path would shadow `operator`), so
    # pytest imports each test module by its basename: two alike would collide.
    from collections import Counter
    from pathlib import Path

    names = Counter(p.name for p in Path(__file__).parent.rglob("*.py") if p.name != "conftest.py")
    assert [n for n, count in names.items() if count > 1] == []
