from __future__ import annotations

from collections.abc import Iterator

import pytest
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
