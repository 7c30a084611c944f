"""Gray failures between real processes: a chain node that is alive but cut off one way, paused, or
stuck on its fsyncs, under client load. Each history must stay linearizable with no acknowledged
write lost, and the chain must be whole and taking writes again after the heal. The write gaps are
printed (targets and figures: bench/gray_failures.py), never asserted on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chaos_netns_helpers import needs_netns
from gray_cluster import GrayCluster, Measurement, assert_sound, gray_cluster

pytestmark = [*needs_netns(), pytest.mark.slow, pytest.mark.timeout(120)]

FAULT_SECONDS = 2.5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrayCluster]:
    with gray_cluster(tmp_path_factory.mktemp("gray")) as c:
        yield c


def measured(cluster: GrayCluster, kind: str, role: str) -> Measurement:
    try:
        m = cluster.measure(kind, role, duration=FAULT_SECONDS)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{cluster.logs()}") from None
    print(f"\n{kind} of the {role} ({m.victim}) for {FAULT_SECONDS} s: longest write gap "
          f"{m.gaps.during:.2f} s during the fault, {m.gaps.after:.2f} s after the heal; "
          f"whole again {m.recovered_in:.2f} s after the heal")
    assert_sound(m.history, m.acks)
    return m


def test_a_middle_that_receives_nothing_on_its_port(cluster: GrayCluster):
    measured(cluster, "one-way-in", "middle")


def test_a_head_whose_replies_are_lost(cluster: GrayCluster):
    measured(cluster, "one-way-out", "head")


def test_a_paused_tail(cluster: GrayCluster):
    measured(cluster, "pause", "tail")


def test_a_head_whose_syncs_stall(cluster: GrayCluster):
    measured(cluster, "stalled-syncs", "head")
