"""One backoff for the node, the proxy and the client: each keeps its own bounds, all share the rule."""

from __future__ import annotations

import random

import httpx
import pytest
from keychain.coordinator.transport import RECONNECT_BACKOFF as RAFT_BACKOFF
from keychain.node.server import RECONNECT_BACKOFF
from keychain.proxy.routing import RETRY_BACKOFF, Retry
from keychain.proxy.watcher import WATCH_BACKOFF

from keychain.backoff import Backoff, FailureStreak
from keychain.client import RETRY_BACKOFF as CLIENT_BACKOFF
from keychain.client import _Attempts, _Call


def test_the_bound_doubles_from_the_base_and_stops_at_the_cap():
    policy = Backoff(base=0.01, cap=0.1)
    assert [policy.bound(n) for n in range(6)] == [0.01, 0.02, 0.04, 0.08, 0.1, 0.1]
    assert policy.bound(100_000) == 0.1, "any number of attempts stays finite and capped"


def test_full_jitter_spreads_over_the_whole_bound_and_a_floor_keeps_part_of_it():
    rng = random.Random(5)
    full = [Backoff(base=1.0, cap=1.0).delay(0, rng) for _ in range(200)]
    assert min(full) < 0.1 and max(full) > 0.9
    half = [Backoff(base=1.0, cap=1.0, floor=0.5).delay(0, rng) for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in half) and min(half) < 0.6


def test_the_same_seed_gives_the_same_delays():
    first = [RETRY_BACKOFF.delay(n, random.Random(11)) for n in range(8)]
    again = [RETRY_BACKOFF.delay(n, random.Random(11)) for n in range(8)]
    assert first == again


def test_a_streak_waits_longer_after_each_failure_in_a_row_and_starts_over_after_a_success():
    streak = FailureStreak(Backoff(base=0.05, cap=1.0, floor=1.0), random.Random(1))  # no jitter
    assert [streak.delay() for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    streak.reset()
    assert streak.delay() == 0.05


def test_each_component_keeps_the_bounds_it_had():
    # the node reopens a link after 25-50 ms at first, never more than half a second apart
    # (timing.STREAM_RETRY_MAX: a healed path is used again within about a second)
    assert (RECONNECT_BACKOFF.base, RECONNECT_BACKOFF.cap, RECONNECT_BACKOFF.floor) == (0.05, 0.5, 0.5)
    # the proxy retries within 5 ms at first, at most every 250 ms
    assert (RETRY_BACKOFF.base, RETRY_BACKOFF.cap, RETRY_BACKOFF.floor) == (0.005, 0.25, 0.0)
    # the proxy reopens its coordinator watch within 100 ms at first, at most every 500 ms
    assert (WATCH_BACKOFF.base, WATCH_BACKOFF.cap, WATCH_BACKOFF.floor) == (0.1, 0.5, 0.0)
    # the client's first retry waits up to 100 ms, never more than a second
    assert (CLIENT_BACKOFF.base, CLIENT_BACKOFF.cap, CLIENT_BACKOFF.floor) == (0.1, 1.0, 0.0)
    # a coordinator retries an unreachable Raft peer after 20 ms, then 40, 80, 160, 200, 200 ms: no jitter
    assert (RAFT_BACKOFF.base, RAFT_BACKOFF.cap, RAFT_BACKOFF.floor) == (0.02, 0.2, 1.0)


def test_each_component_draws_the_delays_it_drew_before_from_the_same_seed():
    """The formulas each component had written out on its own, replayed against the shared one."""
    old, new = random.Random(3), random.Random(3)
    node = FailureStreak(RECONNECT_BACKOFF, new)
    bound = 0.05
    for _ in range(8):  # the node: uniform(next / 2, next), next doubling from 50 ms up to 500 ms
        assert node.delay() == old.uniform(bound / 2, bound)
        bound = min(0.5, bound * 2)

    old, new = random.Random(4), random.Random(4)
    proxy = Retry(deadline=1e9, backoff=RETRY_BACKOFF, rng=new)
    for failures in range(1, 9):  # the proxy: uniform(0, min(0.25, 0.005 * 2**(failures - 1)))
        assert proxy.failed(0.0, "unavailable") == old.uniform(0.0, min(0.25, 0.005 * (2 ** (failures - 1))))

    old, new = random.Random(6), random.Random(6)
    watch = FailureStreak(WATCH_BACKOFF, new)
    for failures in range(1, 9):  # the proxy's watch: uniform(0, min(0.5, 0.05 * 2**failures))
        assert watch.delay() == old.uniform(0.0, min(0.5, 0.05 * 2**failures))

    old, new = random.Random(5), random.Random(5)
    client = _Attempts(_Call("GET", "/v1/kv/k", False), retries=8, rng=new)
    for tried in range(1, 9):  # the client: uniform(0, min(1.0, 0.05 * 2**tried)), tried counting this one
        assert client.after_response(httpx.Response(503)) == old.uniform(0, min(1.0, 0.05 * 2**tried))

    raft = FailureStreak(RAFT_BACKOFF, random.Random(7))
    bound = 0.02
    for _ in range(8):  # a coordinator's Raft peer: backoff, then min(backoff * 2, 0.2), no draw at all
        assert raft.delay() == bound
        bound = min(0.2, bound * 2)


def test_a_client_with_many_retries_keeps_its_pauses_bounded():
    """The client's pause once grew as 0.05 * 2**tries without limit: past about a thousand retries
    the number no longer fit in a float and the retry loop raised OverflowError."""
    attempts = _Attempts(_Call("GET", "/v1/kv/k", False), retries=1500, rng=random.Random(2))
    response = httpx.Response(503, json={"error": "unavailable", "message": "busy"})
    pauses = [attempts.after_response(response) for _ in range(1500)]
    assert all(p is not None and 0 <= p <= 1.0 for p in pauses)


@pytest.mark.parametrize(("base", "cap", "floor"), [(0.0, 1.0, 0.0), (2.0, 1.0, 0.0), (0.1, 1.0, 1.5)])
def test_a_policy_that_cannot_bound_its_delays_is_refused(base: float, cap: float, floor: float):
    with pytest.raises(ValueError):
        Backoff(base=base, cap=cap, floor=floor)

