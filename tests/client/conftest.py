"""The client is tested against the real proxy in front of the proxy tests' in-test chain."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The chain double and the proxy runner live with the proxy tests; share them, not copy them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "proxy"))

from proxy_double import ChainDouble
from proxy_harness import RunningProxy, running_proxy


@pytest.fixture
def chain() -> Iterator[ChainDouble]:
    with ChainDouble(members=3) as double:
        yield double


@pytest.fixture
def proxy(chain: ChainDouble) -> Iterator[RunningProxy]:
    with running_proxy(chain) as running:
        yield running
