"""One emulated Kubernetes cluster with the chart's operator, shared by the scenarios of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kube_cluster import KubeCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with KubeCluster.running(tmp_path_factory.mktemp("kube")) as running:
        yield running
