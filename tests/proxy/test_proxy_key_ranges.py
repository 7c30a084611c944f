"""Key ranges, continuation tokens and transaction bodies as the proxy checks them (pure)."""

from __future__ import annotations

import pytest
from keychain.proxy.errors import ErrorKind, OpError
from keychain.proxy.gateway import group_by_version
from keychain.proxy.key_ranges import decode_token, encode_token, key_range, prefix_end, range_query
from keychain.proxy.txn_json import TxnLimits, parse_txn, txn_request_id

from keychain.proto import chain_pb2

STRONG = chain_pb2.Consistency.STRONG


def test_a_prefix_is_the_range_up_to_its_successor():
    assert prefix_end(b"users/") == b"users0"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff") == b""  # nothing above: to the end of the key space
    assert key_range(b"", None, None, 100) == (b"", b"")


def test_a_token_continues_after_its_key_at_its_snapshot_and_only_in_its_range():
    token = encode_token(42, b"a/", b"a0", b"a/k")
    assert decode_token(token, b"a/", b"a0") == (42, b"a/k")
    query, start, end = range_query({"prefix": b"a/", "next": token.encode()}, STRONG, 100)
    assert (query.start, query.end, query.snapshot, start, end) == (b"a/k\x00", b"a0", 42, b"a/", b"a0")
    for bad in (token[:-2], token + "A", "x" + token[1:], "", "!!!"):
        with pytest.raises(OpError) as refused:
            decode_token(bad, b"a/", b"a0")
        assert refused.value.kind is ErrorKind.INVALID_REQUEST
    with pytest.raises(OpError):
        decode_token(token, b"b/", b"b0")
    with pytest.raises(OpError):  # a version that is not the token's snapshot
        range_query({"prefix": b"a/", "next": token.encode(), "version": b"41"}, STRONG, 100)


def test_a_watch_gets_each_version_once_in_order():
    events = [chain_pb2.WatchEvent(version=v, key=k) for v, k in [(3, b"a"), (4, b"a"), (4, b"b"), (4, b"c"), (5, b"a")]]
    groups = group_by_version(events, after=3)
    assert [[(e.version, e.key) for e in g] for g in groups] == [[(4, b"a"), (4, b"b"), (4, b"c")], [(5, b"a")]]


def test_a_transactions_idempotency_key_is_scoped_to_its_content():
    limits = TxnLimits(8, 1024, 64, 512)
    one = parse_txn(b'{"success": [{"op": "put", "key": "a", "value": "MQ=="}]}', "base64", limits)
    two = parse_txn(b'{"success": [{"op": "put", "key": "a", "value": "2"}]}', "utf8", limits)
    assert one.success[0].value == b"1" and two.success[0].value == b"2"
    assert txn_request_id("k", one) == txn_request_id("k", one) != txn_request_id("k", two)
