"""Write batches to one head are pipelined: up to `max_in_flight` WriteRequests are out at once, so a
write arriving while one batch travels the chain need not wait for that batch's whole round trip; under
load up to `extra_in_flight` more, each large enough to be worth its cost."""

from __future__ import annotations

import pytest
from keychain.proxy.batching import BatchQueue


def test_a_second_batch_leaves_while_the_first_is_out_and_a_third_waits_for_one_to_return():
    queue: BatchQueue[str] = BatchQueue(max_ops=2, max_bytes=100, max_pending=10, max_in_flight=2)
    queue.offer("w1", 10)
    assert queue.take() == ["w1"], "an idle proxy sends at once"
    for name in ("w2", "w3", "w4"):
        queue.offer(name, 10)
    assert queue.take() == ["w2", "w3"], "a second batch leaves while the first is out"
    assert queue.in_flight
    assert queue.take() is None, "two out: the rest wait"
    queue.done()
    assert queue.take() == ["w4"], "one returned: the next leaves"
    queue.done()
    queue.done()
    assert not queue.in_flight
    assert queue.take() is None, "nothing waits"


def test_under_load_extra_batches_leave_only_once_they_are_large_enough():
    queue: BatchQueue[str] = BatchQueue(max_ops=10, max_bytes=1000, max_pending=100, max_in_flight=2,
                                        extra_in_flight=2, extra_min_ops=4)
    for name in ("a", "b"):
        queue.offer(name, 10)
        assert queue.take() == [name], "the first two slots take any batch"
    for name in ("c1", "c2", "c3"):
        queue.offer(name, 10)
        assert queue.take() is None, "a light load: a small batch waits for one to return"
    queue.offer("c4", 10)
    assert queue.take() == ["c1", "c2", "c3", "c4"], "a batch worth its cost takes an extra slot"
    for i in range(4):
        queue.offer(f"d{i}", 10)
    assert queue.take() == ["d0", "d1", "d2", "d3"], "and another"
    for i in range(6):
        queue.offer(f"e{i}", 10)
    assert queue.take() is None, "four out: even a large batch waits"
    queue.done()
    assert queue.take() == [f"e{i}" for i in range(6)]


def test_an_extra_slot_takes_a_batch_full_by_size_even_of_few_writes():
    queue: BatchQueue[str] = BatchQueue(max_ops=10, max_bytes=100, max_pending=100, max_in_flight=1,
                                        extra_in_flight=1, extra_min_ops=8)
    queue.offer("a", 10)
    assert queue.take() == ["a"]
    queue.offer("big1", 60)
    assert queue.take() is None
    queue.offer("big2", 60)
    assert queue.take() == ["big1"], "the waiting bytes fill a batch: it leaves, within max_bytes"


def test_returning_more_batches_than_were_taken_is_a_bug_and_the_limit_must_be_positive():
    queue: BatchQueue[str] = BatchQueue()
    with pytest.raises(RuntimeError):
        queue.done()
    with pytest.raises(ValueError):
        BatchQueue(max_in_flight=0)
    with pytest.raises(ValueError):
        BatchQueue(extra_in_flight=-1)

