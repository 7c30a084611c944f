"""A chain member's full disk through the proxy: 507 insufficient_storage naming the node, at once
and with nothing applied; deletes and reads still served; the alarm in /v1/cluster and the status
table; writes accepted again once it clears."""

from __future__ import annotations

import grpc
import httpx
from proxy_double import ChainDouble
from proxy_harness import RunningProxy

from keychain import commands
from keychain.proto import chain_pb2, kv_pb2, kv_pb2_grpc

Code = chain_pb2.Code


def test_a_full_disk_is_a_507_naming_the_node_and_nothing_is_applied(proxy: RunningProxy, chain: ChainDouble):
    with httpx.Client(base_url=proxy.url) as http:
        assert http.put("/v1/kv/a", content=b"1").status_code == 200
        chain.state.full.add("node-2")

        refused = http.put("/v1/kv/a", content=b"2", headers={"Idempotency-Key": "w-full"})
        assert refused.status_code == 507
        assert refused.json()["error"] == "insufficient_storage"
        assert "node-2" in refused.json()["message"]
        assert len(chain.state.write_attempts) == 2, "refused once, not retried until the deadline"
        assert http.get("/v1/kv/a").content == b"1", "reads are served, nothing was applied"
        assert http.delete("/v1/kv/a").status_code == 200, "deletes free space and are accepted"

        report = http.get("/v1/cluster").json()
        [only] = report["chains"]
        assert only["storage_alarms"] == ["node-2"]
        assert [m["storage_alarm"] for m in only["members"]] == [False, True, False]
        [table, _] = commands.status_tables(report)
        assert "node-2" in str(table.title) and "writes refused" in str(table.title)

        with grpc.insecure_channel(proxy.grpc_address) as channel:
            put = kv_pb2_grpc.KVStub(channel).Put(kv_pb2.PutRequest(key=b"g", value=b"1"))
        assert put.error.code == Code.INSUFFICIENT_STORAGE and "node-2" in put.error.message

        txn = {"compare": [], "success": [{"op": "put", "key": "t", "value": "1"}],
               "failure": [{"op": "delete", "key": "t"}]}
        refused = http.post("/v1/txn", params={"encoding": "utf8"}, json=txn)
        assert refused.status_code == 507 and refused.json()["error"] == "insufficient_storage"
        assert "node-2" in refused.json()["message"]
        deletes = {"compare": [], "success": [{"op": "delete", "key": "t"}, {"op": "get", "key": "a"}]}
        assert http.post("/v1/txn", params={"encoding": "utf8"}, json=deletes).status_code == 200

        chain.state.full.clear()
        assert http.put("/v1/kv/a", content=b"3").status_code == 200
        assert http.get("/v1/cluster").json()["chains"][0]["storage_alarms"] == []
