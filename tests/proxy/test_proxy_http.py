"""The HTTP API of the real proxy, in front of an in-test chain of three members."""

from __future__ import annotations

import httpx
import pytest
from keychain.proxy.validation import scoped_request_id
from proxy_double import ChainDouble
from proxy_harness import RunningProxy, running_proxy

from keychain import commands
from keychain.client import Client
from keychain.proto import chain_pb2


@pytest.fixture
def http(proxy: RunningProxy):
    with httpx.Client(base_url=proxy.url) as client:
        yield client


def test_put_get_delete_round_trip_with_etags(http: httpx.Client, chain: ChainDouble):
    written = http.put("/v1/kv/user/42", content=b"\x00\xffbinary")
    assert written.status_code == 200
    assert written.json() == {"key": "user/42", "version": 1}
    assert written.headers["etag"] == '"1"'

    read = http.get("/v1/kv/user/42")
    assert read.status_code == 200 and read.content == b"\x00\xffbinary"
    assert read.headers["etag"] == '"1"'
    assert read.headers["content-type"] == "application/octet-stream"
    assert http.get("/v1/kv/user/42", headers={"If-None-Match": '"1"'}).status_code == 304
    largest = b"v" * (1 << 20)
    assert http.put("/v1/kv/largest", content=largest).status_code == 200, "the limit itself is allowed"
    assert http.get("/v1/kv/largest").content == largest

    deleted = http.delete("/v1/kv/user/42")
    assert deleted.status_code == 200 and deleted.json()["version"] == 3
    missing = http.get("/v1/kv/user/42")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert chain.state.data[b"user/42"].deleted


def test_compare_and_set_with_if_match(http: httpx.Client, chain: ChainDouble):
    version = http.put("/v1/kv/counter", content=b"1").json()["version"]
    stale = http.put("/v1/kv/counter", content=b"2", headers={"If-Match": f'"{version + 5}"'})
    assert stale.status_code == 412
    assert stale.json()["error"] == "precondition_failed"
    assert stale.json()["current_version"] == version
    ok = http.put("/v1/kv/counter", content=b"2", headers={"If-Match": f'"{version}"'})
    assert ok.status_code == 200
    assert http.get("/v1/kv/counter").content == b"2"
    gone = http.delete("/v1/kv/counter", headers={"If-Match": f'"{version}"'})
    assert gone.status_code == 412, "a delete with a stale If-Match is refused"
    assert http.get("/v1/kv/counter").content == b"2"


def test_create_only_with_if_none_match_star(http: httpx.Client):
    assert http.put("/v1/kv/lock", content=b"me", headers={"If-None-Match": "*"}).status_code == 200
    taken = http.put("/v1/kv/lock", content=b"you", headers={"If-None-Match": "*"})
    assert taken.status_code == 412 and taken.json()["current_version"] == 1
    assert http.get("/v1/kv/lock").content == b"me"


def test_bad_input_gets_a_json_4xx_and_changes_nothing(http: httpx.Client, chain: ChainDouble):
    cases = [
        (http.put("/v1/kv/", content=b"x"), 400, "invalid_key"),
        (http.put("/v1/kv/%FF%FEbad", content=b"x"), 400, "invalid_key"),
        (http.get("/v1/kv/%C3%28"), 400, "invalid_key"),
        (http.put("/v1/kv/" + "k" * 1025, content=b"x"), 413, "too_large"),
        (http.put("/v1/kv/big", content=b"v" * ((1 << 20) + 1)), 413, "too_large"),
        (http.put("/v1/kv/k", content=b"x", headers={"If-Match": "not-an-etag"}), 400, "invalid_request"),
        (http.put("/v1/kv/k", content=b"x", headers={"If-None-Match": '"3"'}), 400, "invalid_request"),
        (http.put("/v1/kv/k", content=b"x", headers={"Idempotency-Key": "k" * 200}), 400, "invalid_request"),
        (http.get("/v1/kv/k", params={"consistency": "sloppy"}), 400, "invalid_request"),
        (http.post("/v1/kv/k", content=b"x"), 405, "method_not_allowed"),
        (http.get("/v2/nothing"), 404, "not_found"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert response.json()["error"] == code and response.json()["message"]
    assert chain.state.data == {}, "no rejected request reached the chain"
    assert chain.state.write_attempts == []


def test_value_limit_is_configurable(chain: ChainDouble):
    with running_proxy(chain, max_value_bytes=8, max_key_bytes=4) as proxy:
        assert httpx.put(f"{proxy.url}/v1/kv/abcd", content=b"12345678").status_code == 200
        assert httpx.put(f"{proxy.url}/v1/kv/abcd", content=b"123456789").status_code == 413
        assert httpx.put(f"{proxy.url}/v1/kv/abcde", content=b"1").status_code == 413


def test_streamed_body_over_the_limit_is_refused(chain: ChainDouble):
    def chunks():
        for _ in range(10):
            yield b"x" * 4

    with running_proxy(chain, max_value_bytes=16) as proxy:
        response = httpx.put(f"{proxy.url}/v1/kv/s", content=chunks())
        assert response.status_code == 413
    assert b"s" not in chain.state.data


def test_reads_are_spread_over_every_active_member_and_never_reach_a_syncing_one(chain: ChainDouble):
    joining = chain.state.members[2]
    members = [*chain.state.members[:2], type(joining)(id=joining.id, address=joining.address, state=1)]
    chain.reconfigure(members)
    with running_proxy(chain) as proxy, httpx.Client(base_url=proxy.url) as http:
        http.put("/v1/kv/hot", content=b"v")
        for _ in range(40):
            assert http.get("/v1/kv/hot").status_code == 200
    reads = chain.state.reads
    assert reads["node-3"] == 0, "a syncing member serves no reads"
    assert reads["node-1"] >= 15 and reads["node-2"] >= 15, dict(reads)


def test_eventual_consistency_can_be_asked_per_request(http: httpx.Client):
    http.put("/v1/kv/e", content=b"v")
    assert http.get("/v1/kv/e", params={"consistency": "eventual"}).content == b"v"
    assert http.get("/v1/kv/e", params={"consistency": "strong"}).content == b"v"


def test_idempotency_key_names_the_request_so_a_client_retry_applies_once(
    http: httpx.Client, chain: ChainDouble
):
    first = http.put("/v1/kv/pay", content=b"10", headers={"Idempotency-Key": "order-7"})
    again = http.put("/v1/kv/pay", content=b"10", headers={"Idempotency-Key": "order-7"})
    assert first.json() == again.json()
    assert chain.state.applied[scoped_request_id("order-7", b"pay")] == 1
    assert chain.state.seq == 1


def test_an_idempotency_key_reused_on_another_key_is_another_write(http: httpx.Client, chain: ChainDouble):
    first = http.put("/v1/kv/k1", content=b"one", headers={"Idempotency-Key": "reused"})
    other = http.put("/v1/kv/k2", content=b"two", headers={"Idempotency-Key": "reused"})
    assert first.json() == {"key": "k1", "version": 1}
    assert other.json() == {"key": "k2", "version": 2}
    assert http.get("/v1/kv/k2").content == b"two"
    gone = http.delete("/v1/kv/k3", headers={"Idempotency-Key": "reused"})
    assert gone.json() == {"key": "k3", "version": 3}
    assert chain.state.seq == 3


def test_bearer_token_is_required_when_auth_is_on(chain: ChainDouble):
    with running_proxy(chain, auth_token="s3cret") as proxy, httpx.Client(base_url=proxy.url) as http:
        denied = http.put("/v1/kv/a", content=b"x")
        assert denied.status_code == 401 and denied.json()["error"] == "unauthorized"
        assert denied.headers["www-authenticate"].startswith("Bearer")
        assert http.get("/v1/kv/a", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/v1/cluster").status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert http.put("/v1/kv/a", content=b"x", headers=good).status_code == 200
        assert http.get("/v1/kv/a", headers=good).content == b"x"
        assert http.get("/healthz").status_code == 200, "probes stay open"
    assert chain.state.seq == 1


def test_cluster_report_has_the_chain_head_to_tail_with_counts_and_the_coordinator(
    http: httpx.Client, chain: ChainDouble
):
    http.put("/v1/kv/a", content=b"x")
    for _ in range(3):
        http.get("/v1/kv/a")
    report = http.get("/v1/cluster").json()
    assert report["coordinator"] == {
        "leader": "coord-1",
        "members": [{"id": "coord-1", "address": chain.coordinator, "role": "leader"}],
    }
    [only] = report["chains"]
    assert only["name"] == "test" and only["epoch"] == 1
    assert [(m["id"], m["role"], m["healthy"]) for m in only["members"]] == [
        ("node-1", "head", True),
        ("node-2", "middle", True),
        ("node-3", "tail", True),
    ]
    assert sum(m["reads"] for m in only["members"]) == 3
    assert all(m["writes"] == 1 for m in only["members"])
    assert only["members"][0]["address"] == chain.member("node-1").address


def test_operations_endpoints_metrics_and_openapi(http: httpx.Client):
    http.put("/v1/kv/m", content=b"x")
    http.get("/v1/kv/m")
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["epoch"] == 1
    metrics = http.get("/metrics").text
    assert 'keychain_proxy_requests_total{api="http",op="put",outcome="ok"} 1.0' in metrics
    assert "keychain_proxy_write_batch_ops_bucket" in metrics
    assert "keychain_proxy_topology_epoch 1.0" in metrics
    schema = http.get("/openapi.json").json()
    kv = schema["paths"]["/v1/kv/{key}"]
    assert set(kv) == {"get", "head", "put", "delete"}
    assert {p["name"] for p in kv["put"]["parameters"]} >= {
        "key",
        "If-Match",
        "If-None-Match",
        "Idempotency-Key",
    }
    assert "504" in kv["put"]["responses"]
    assert http.get("/docs").status_code == 200


def test_head_answers_like_get_without_the_body(http: httpx.Client):
    http.put("/v1/kv/h", content=b"hello")
    got, head = http.get("/v1/kv/h"), http.head("/v1/kv/h")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == got.headers["etag"] == '"1"'
    assert head.headers["content-length"] == "5"
    missing = http.head("/v1/kv/absent")
    assert missing.status_code == 404 and missing.content == b""
    assert http.head("/v1/kv/h", headers={"If-None-Match": '"1"'}).status_code == 304


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [('"2"', 304), ("*", 304), ('W/"2"', 304), ('"1", W/"2"', 304), ('"1"', 200), ('W/"1"', 200), ("junk", 200)],
)
def test_if_none_match_honours_any_weak_tags_and_lists(http: httpx.Client, if_none_match: str, status: int):
    http.put("/v1/kv/n", content=b"a")
    http.put("/v1/kv/n", content=b"b")
    answer = http.get("/v1/kv/n", headers={"If-None-Match": if_none_match})
    assert answer.status_code == status
    assert answer.headers["etag"] == '"2"'
    assert answer.content == (b"" if status == 304 else b"b")


def test_a_read_without_consistency_uses_the_proxy_default(chain: ChainDouble):
    with running_proxy(chain, read_consistency="eventual") as proxy, httpx.Client(base_url=proxy.url) as http:
        http.put("/v1/kv/d", content=b"1")
        assert http.get("/v1/kv/d").content == b"1"
        assert http.head("/v1/kv/d").status_code == 200
        assert http.get("/v1/kv/d", params={"consistency": "strong"}).content == b"1"
    assert chain.state.read_consistencies == [chain_pb2.EVENTUAL, chain_pb2.EVENTUAL, chain_pb2.STRONG]


def test_the_client_and_the_cli_leave_the_consistency_to_the_proxy_unless_asked(chain: ChainDouble):
    with running_proxy(chain, read_consistency="eventual") as proxy, Client(proxy.url) as kc:
        kc.put("d", b"1")
        assert kc.get("d") == (b"1", 1)
        assert kc.get("d", consistency="strong") == (b"1", 1)
        assert commands.main(["get", "d", "--url", proxy.url]) == 0
    assert chain.state.read_consistencies == [chain_pb2.EVENTUAL, chain_pb2.STRONG, chain_pb2.EVENTUAL]
