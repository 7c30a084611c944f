"""The proxy's pure pieces: topology, read spreading, retry decisions, write batching, input checks."""

from __future__ import annotations

import random

import grpc
import pytest
from keychain.proxy.auth import BearerAuth
from keychain.proxy.batching import BatchQueue
from keychain.proxy.errors import ErrorKind, OpError
from keychain.proxy.routing import (
    RETRY_BACKOFF,
    Disposition,
    ReadBalancer,
    Retry,
    classify,
    transport_failure_may_have_applied,
    write_may_have_applied,
)
from keychain.proxy.topology import Topology, TopologyView
from keychain.proxy.validation import check_request_id, key_from_raw_path, write_conditions

from keychain.backoff import Backoff
from keychain.proto import chain_pb2

Code = chain_pb2.Code
ACTIVE, SYNCING = chain_pb2.MemberState.ACTIVE, chain_pb2.MemberState.SYNCING


def config(epoch: int, *members: tuple[str, int], chain: str = "c") -> chain_pb2.ChainConfig:
    return chain_pb2.ChainConfig(
        chain=chain,
        epoch=epoch,
        members=[chain_pb2.Member(id=i, address=f"{i}:1", state=s) for i, s in members],
    )


def test_topology_orders_active_members_head_to_tail_and_keeps_syncing_members_out_of_routing():
    topology = Topology.from_config(config(3, ("a", ACTIVE), ("b", ACTIVE), ("c", ACTIVE), ("d", SYNCING)))
    assert topology.head.id == "a" and topology.tail.id == "c"
    assert [m.id for m in topology.active] == ["a", "b", "c"]
    assert [topology.role_of(m) for m in topology.members()] == ["head", "middle", "tail", "syncing"]


def test_a_view_never_goes_back_to_an_older_epoch_nor_adopts_another_chain():
    view = TopologyView("c")
    assert view.apply(config(5, ("a", ACTIVE)))
    assert not view.apply(config(4, ("b", ACTIVE))), "a lagging coordinator's older epoch is ignored"
    assert not view.apply(config(9, ("z", ACTIVE), chain="other"))
    assert not view.apply(config(5, ("a", ACTIVE))), "the same configuration again is no change"
    assert view.apply(config(6, ("b", ACTIVE), ("a", ACTIVE)))
    assert view.current.head.id == "b"


def test_reads_rotate_over_every_active_member_when_idle():
    members = Topology.from_config(config(1, ("a", ACTIVE), ("b", ACTIVE), ("c", ACTIVE))).active
    balancer = ReadBalancer()
    picks = [balancer.pick(members).id for _ in range(6)]
    assert sorted(picks) == ["a", "a", "b", "b", "c", "c"]


def test_reads_avoid_the_member_with_reads_outstanding_and_a_member_that_just_failed():
    members = Topology.from_config(config(1, ("a", ACTIVE), ("b", ACTIVE))).active
    balancer = ReadBalancer()
    slow = members[0]
    for _ in range(3):
        balancer.started(slow)
    assert {balancer.pick(members).id for _ in range(4)} == {"b"}
    balancer.finished(slow)
    balancer.finished(slow)
    balancer.finished(slow)
    assert balancer.outstanding == {}
    assert {balancer.pick(members, avoid=frozenset({"a"})).id for _ in range(4)} == {"b"}
    only = members[:1]
    assert balancer.pick(only, avoid=frozenset({"a"})).id == "a", "the last member is tried again"
    assert balancer.pick(()) is None


def test_answers_about_the_request_are_final_and_chain_states_are_retried():
    for code in (Code.OK, Code.PRECONDITION_FAILED, Code.NOT_FOUND, Code.TOO_LARGE, Code.INVALID_ARGUMENT):
        assert classify(code) is Disposition.FINAL
    for code in (Code.WRONG_EPOCH, Code.NOT_HEAD, Code.LEASE_EXPIRED, Code.UNAVAILABLE, Code.OUTCOME_UNKNOWN):
        assert classify(code) is Disposition.RETRY
    assert write_may_have_applied(Code.OUTCOME_UNKNOWN)
    assert not write_may_have_applied(Code.WRONG_EPOCH)
    assert not transport_failure_may_have_applied(grpc.StatusCode.UNIMPLEMENTED), "no handler ran"
    assert transport_failure_may_have_applied(grpc.StatusCode.DEADLINE_EXCEEDED)
    assert transport_failure_may_have_applied(grpc.StatusCode.UNAVAILABLE), "a connection lost mid-call"


def test_retries_stop_at_the_deadline_and_remember_whether_a_write_may_have_applied():
    retry = Retry(deadline=1.0, backoff=Backoff(base=0.1, cap=0.4), rng=random.Random(7))
    now, delays = 0.0, []
    while (delay := retry.failed(now, "wrong_epoch")) is not None:
        assert 0 <= delay <= 0.4
        delays.append(delay)
        now += delay + 0.05
    assert delays and now < 1.0 + 0.45
    assert not retry.outcome_unknown, "refusals never applied the write: plain unavailable"

    uncertain = Retry(deadline=1.0, backoff=RETRY_BACKOFF, rng=random.Random(1))
    uncertain.failed(0.0, "transport", maybe_applied=True)
    uncertain.failed(0.1, "wrong_epoch")
    assert uncertain.outcome_unknown, "one uncertain attempt makes the outcome unknown"


def test_a_batch_leaves_at_once_when_idle_and_waiting_writes_leave_together_after_it():
    queue: BatchQueue[str] = BatchQueue(max_ops=3, max_bytes=100, max_pending=5)
    assert queue.offer("w1", 10)
    assert queue.take() == ["w1"], "no timer: an idle proxy sends immediately"
    for name in ("w2", "w3", "w4", "w5"):
        assert queue.offer(name, 10)
    assert queue.take() is None, "one batch in flight at a time"
    queue.done()
    assert queue.take() == ["w2", "w3", "w4"], "bounded by max_ops"
    queue.done()
    assert queue.take() == ["w5"]


def test_batches_are_bounded_in_bytes_but_always_carry_one_write_and_the_queue_is_bounded():
    queue: BatchQueue[str] = BatchQueue(max_ops=10, max_bytes=100, max_pending=3)
    assert queue.offer("big", 500)
    assert queue.offer("a", 60)
    assert queue.offer("b", 60)
    assert not queue.offer("refused", 1), "the waiting queue is full"
    assert queue.take() == ["big"]
    queue.done()
    assert queue.take() == ["a"], "a + b would exceed max_bytes"
    with pytest.raises(ValueError):
        BatchQueue(max_ops=0)


def test_keys_come_from_the_raw_path_and_must_be_non_empty_utf8_within_the_limit():
    assert key_from_raw_path(b"/v1/kv/a%2Fb/c%C3%A9", b"/v1/kv/", 64) == "a/b/cé".encode()
    cases = {
        b"/v1/kv/": ErrorKind.INVALID_KEY,
        b"/v1/kv/%FF%FE": ErrorKind.INVALID_KEY,
        b"/v1/kv/" + b"k" * 65: ErrorKind.TOO_LARGE,
    }
    for raw, kind in cases.items():
        with pytest.raises(OpError) as caught:
            key_from_raw_path(raw, b"/v1/kv/", 64)
        assert caught.value.kind is kind, raw


def test_conditional_write_headers():
    assert write_conditions(None, None) == (None, False)
    assert write_conditions('"42"', None) == (42, False)
    assert write_conditions(None, "*") == (None, True)
    for if_match, if_none_match in [
        ('"1"', "*"),
        ("42", None),
        ('W/"1"', None),
        ('"1", "2"', None),
        (None, '"3"'),
    ]:
        with pytest.raises(OpError) as caught:
            write_conditions(if_match, if_none_match)
        assert caught.value.kind is ErrorKind.INVALID_REQUEST
    with pytest.raises(OpError):
        check_request_id("")
    with pytest.raises(OpError):
        check_request_id("naïve")
    assert check_request_id("retry-7") == "retry-7"


def test_the_cluster_report_falls_back_to_the_proxys_topology_without_a_coordinator():
    from keychain.proxy.cluster_view import render_cluster

    topology = Topology.from_config(config(4, ("a", ACTIVE), ("b", ACTIVE), ("c", SYNCING)))
    node_a = chain_pb2.NodeStatus(id="a", reads=7, writes=3, lease_valid=True)
    report = render_cluster(None, topology, {"a": node_a, "b": None})
    assert report["coordinator"] == {"leader": None, "members": []}
    [chain] = report["chains"]
    assert chain["epoch"] == 4
    assert [(m["id"], m["role"], m["healthy"], m["reads"], m["writes"]) for m in chain["members"]] == [
        ("a", "head", True, 7, 3),
        ("b", "tail", False, 0, 0),
        ("c", "syncing", False, 0, 0),
    ]


def test_one_bearer_check_serves_every_api():
    off, on = BearerAuth(None), BearerAuth("s3cret")
    assert off.allows(None) and not off.enabled
    assert on.allows(b"Bearer s3cret") and on.allows("Bearer s3cret")  # HTTP header bytes, gRPC metadata str
    for wrong in (None, b"", b"Bearer s3cre", "Bearer s3cret ", b"bearer s3cret"):
        assert not on.allows(wrong)
    with pytest.raises(OpError) as refused:
        on.check(b"Bearer nope")
    assert refused.value.kind is ErrorKind.UNAUTHORIZED
    on.check(b"Bearer s3cret")
