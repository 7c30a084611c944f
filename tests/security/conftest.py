"""The security tests run the cluster processes of the cluster tests, with certificates."""

from __future__ import annotations

import sys
from pathlib import Path

# The process harness lives with the cluster tests; share it, not copy it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cluster"))
