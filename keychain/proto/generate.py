"""Regenerate the protobuf and gRPC modules from the .proto files beside this one.

    python -m keychain.proto.generate            # rewrite the generated modules in place
    python -m keychain.proto.generate --check    # exit 1 if any generated module is stale

Imports are rooted at the repository top so generated code says `from keychain.proto import ...`.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
ROOT = PROTO_DIR.parent.parent


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generated_names(proto: Path) -> list[str]:
    stem = proto.stem
    return [f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"]


def generate(out_root: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc  # only needed by developers and the staleness test

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    for proto in proto_files():
        rel = proto.relative_to(ROOT)
        args = [
            "protoc",
            f"-I{ROOT}",
            f"-I{well_known}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            str(proto),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {rel}")


def stale_files() -> list[str]:
    """Names of generated modules that differ from what the .proto files produce now."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        stale = []
        for proto in proto_files():
            for name in generated_names(proto):
                fresh = out / "keychain" / "proto" / name
                current = PROTO_DIR / name
                if not current.exists() or not filecmp.cmp(fresh, current, shallow=False):
                    stale.append(name)
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale modules")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: keychain/proto/{name}", file=sys.stderr)
        return 1 if stale else 0
    import os

    os.chdir(ROOT)
    generate(ROOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
