"""The `keychain` command: one entry point whose subcommands are the components.

Each subcommand lives in its own module with a `main(argv) -> int`; this file only dispatches,
importing a component when it is asked for so `keychain get` stays quick to start.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("keychain.local", "run a local cluster: coordinators, chain nodes and a proxy"),
    "node": ("keychain.node.main", "run one CRAQ chain node"),
    "coordinator": ("keychain.coordinator.main", "run one coordinator (Raft) member"),
    "proxy": ("keychain.proxy.main", "run the HTTP/gRPC proxy"),
    "operator": ("keychain.operator.main", "run the Kubernetes operator"),
    "put": ("keychain.commands", "write a key"),
    "get": ("keychain.commands", "read a key"),
    "delete": ("keychain.commands", "delete a key"),
    "list": ("keychain.commands", "list the keys under a prefix"),
    "txn": ("keychain.commands", "run an atomic multi-key transaction (JSON)"),
    "watch": ("keychain.commands", "print committed changes under a prefix as they come"),
    "status": ("keychain.commands", "show the chain and the coordinators"),
    "bench": ("keychain.commands", "drive load against a running cluster"),
    "check-history": ("keychain.testing.checker", "check a JSON-lines history (linearizability, watch streams)"),
}


def usage() -> str:
    lines = ["usage: keychain <command> [options]", "", "commands:"]
    lines += [f"  {name:<14} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run `keychain <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("--version", "version"):
        from keychain import __version__

        print(f"keychain {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"keychain: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    if module.__name__ == "keychain.commands":
        return int(module.main([name, *rest]) or 0)
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
