"""One emulated Kubernetes cluster with the chart's operator, shared by the scenarios of a module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from kube_cluster import KubeCluster

from keychain.testing.netns import unavailable_reason

NETNS_UNAVAILABLE = unavailable_reason() or (
    None if shutil.which("openssl") else "the `openssl` command (the API server's certificate) is not installed"
)


def needs_pods() -> list[pytest.MarkDecorator]:
    """Marks for a module that runs pods: real processes in namespaces, so root is needed."""
    return [
        pytest.mark.netns,
        pytest.mark.process,
        pytest.mark.slow,
        pytest.mark.skipif(NETNS_UNAVAILABLE is not None, reason=f"pods need network namespaces: {NETNS_UNAVAILABLE}"),
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with KubeCluster.running(tmp_path_factory.mktemp("kube")) as running:
        yield running
