"""How many internal endpoints answer a caller with no credentials, without and with mutual TLS.

    PYTHONSAFEPATH=1 .venv/bin/python bench/open_endpoints.py

Starts a local cluster (3 coordinators with their admin HTTP API, 3 chain nodes; real processes on
127.0.0.1) twice, plaintext then with `tls=True`, and probes every node's and coordinator's gRPC
port (plaintext GetStatus / GetClusterStatus) and every admin API (GET /v1/status over HTTP, and
over HTTPS without a client certificate or token). Prints the endpoints that answered.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))

from cluster_harness import ProcessCluster, wait_for


def open_endpoints(root: Path, tls: bool) -> tuple[int, list[str]]:
    c = ProcessCluster(root, coordinators=3, nodes=3, log_level="warning", tls=tls)
    c.start_all()
    try:
        wait_for("three active chain members", lambda: sorted(c.roles().values()) == ["head", "middle", "tail"],
                 timeout=30, interval=0.1)
        total = sum(2 if p.http else 1 for p in c.procs.values())  # gRPC, and the admin API
        return total, c.endpoints_open_without_credentials()
    finally:
        c.stop_all()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for tls in (False, True):
            total, reachable = open_endpoints(Path(tmp) / ("tls" if tls else "plain"), tls)
            print(f"{'mutual TLS' if tls else 'plaintext '}: {len(reachable)} of {total} internal endpoints "
                  "answer without credentials")
            for endpoint in reachable:
                print(f"    {endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
