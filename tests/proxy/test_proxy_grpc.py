"""The gRPC KV service: the same operations and errors as the HTTP API."""

from __future__ import annotations

import grpc
import pytest
from keychain.proxy.validation import scoped_request_id
from proxy_double import ChainDouble
from proxy_harness import RunningProxy, running_proxy

from keychain.proto import chain_pb2, kv_pb2, kv_pb2_grpc

Code = chain_pb2.Code


@pytest.fixture
def kv(proxy: RunningProxy):
    with grpc.insecure_channel(proxy.grpc_address) as channel:
        yield kv_pb2_grpc.KVStub(channel)


def test_put_get_delete_and_conditions_over_grpc(kv: kv_pb2_grpc.KVStub, chain: ChainDouble):
    put = kv.Put(kv_pb2.PutRequest(key=b"g", value=b"1"))
    assert put.error.code == Code.OK and put.version == 1
    got = kv.Get(kv_pb2.GetRequest(key=b"g"))
    assert (got.value, got.version) == (b"1", 1)
    stale = kv.Put(kv_pb2.PutRequest(key=b"g", value=b"2", if_version=7))
    assert stale.error.code == Code.PRECONDITION_FAILED and stale.current_version == 1
    taken = kv.Put(kv_pb2.PutRequest(key=b"g", value=b"2", if_absent=True))
    assert taken.error.code == Code.PRECONDITION_FAILED
    cas = kv.Put(kv_pb2.PutRequest(key=b"g", value=b"2", if_version=1, request_id="r-9"))
    assert cas.error.code == Code.OK and cas.version == 2
    assert chain.state.applied[scoped_request_id("r-9", b"g")] == 1
    elsewhere = kv.Put(kv_pb2.PutRequest(key=b"h", value=b"3", request_id="r-9"))
    assert elsewhere.version == 3, "the same request id on another key is another write"
    assert kv.Get(kv_pb2.GetRequest(key=b"h")).value == b"3"
    deleted = kv.Delete(kv_pb2.DeleteRequest(key=b"g", if_version=2))
    assert deleted.error.code == Code.OK
    assert kv.Get(kv_pb2.GetRequest(key=b"g", consistency=chain_pb2.EVENTUAL)).error.code == Code.NOT_FOUND


def test_bad_input_over_grpc_is_refused_in_band(kv: kv_pb2_grpc.KVStub, chain: ChainDouble):
    assert kv.Put(kv_pb2.PutRequest(key=b"", value=b"x")).error.code == Code.INVALID_ARGUMENT
    assert kv.Put(kv_pb2.PutRequest(key=b"\xff", value=b"x")).error.code == Code.INVALID_ARGUMENT
    assert kv.Put(kv_pb2.PutRequest(key=b"k" * 2000, value=b"x")).error.code == Code.TOO_LARGE
    assert kv.Put(kv_pb2.PutRequest(key=b"k", value=b"x" * ((1 << 20) + 1))).error.code == Code.TOO_LARGE
    assert kv.Get(kv_pb2.GetRequest(key=b"")).error.code == Code.INVALID_ARGUMENT
    assert chain.state.write_attempts == []


def test_an_unknown_consistency_is_refused_before_it_reaches_a_batch(kv: kv_pb2_grpc.KVStub, chain: ChainDouble):
    kv.Put(kv_pb2.PutRequest(key=b"c", value=b"1"))
    bad = kv.Get(kv_pb2.GetRequest(key=b"c", consistency=7))  # type: ignore[arg-type]
    assert bad.error.code == Code.INVALID_ARGUMENT and "consistency" in bad.error.message
    assert chain.state.read_batches == [], "a node refuses a whole batch holding it"
    assert kv.Get(kv_pb2.GetRequest(key=b"c")).value == b"1"


def test_a_get_without_consistency_uses_the_proxy_default(chain: ChainDouble):
    with (
        running_proxy(chain, read_consistency="eventual") as proxy,
        grpc.insecure_channel(proxy.grpc_address) as channel,
    ):
        kv = kv_pb2_grpc.KVStub(channel)
        kv.Put(kv_pb2.PutRequest(key=b"d", value=b"1"))
        assert kv.Get(kv_pb2.GetRequest(key=b"d")).value == b"1"
        assert kv.Get(kv_pb2.GetRequest(key=b"d", consistency=chain_pb2.STRONG)).value == b"1"
    assert chain.state.read_consistencies == [chain_pb2.EVENTUAL, chain_pb2.STRONG]


def test_grpc_requires_the_bearer_token_when_auth_is_on(chain: ChainDouble):
    with (
        running_proxy(chain, auth_token="t0k") as proxy,
        grpc.insecure_channel(proxy.grpc_address) as channel,
    ):
        kv = kv_pb2_grpc.KVStub(channel)
        with pytest.raises(grpc.RpcError) as denied:
            kv.Put(kv_pb2.PutRequest(key=b"a", value=b"x"))
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = kv.Put(kv_pb2.PutRequest(key=b"a", value=b"x"), metadata=[("authorization", "Bearer t0k")])
        assert ok.error.code == Code.OK
    assert chain.state.seq == 1
