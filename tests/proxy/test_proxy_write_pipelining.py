"""Write batches to one head are pipelined: up to `max_in_flight` WriteRequests are out at once, so a
write arriving while one batch travels the chain need not wait for that batch's whole round trip."""

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


def test_returning_more_batches_than_were_taken_is_a_bug_and_the_limit_must_be_positive():
    queue: BatchQueue[str] = BatchQueue()
    with pytest.raises(RuntimeError):
        queue.done()
    with pytest.raises(ValueError):
        BatchQueue(max_in_flight=0)

