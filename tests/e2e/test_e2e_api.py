"""End to end through `keychain up`: the HTTP API, the cluster report and reads on every node.

One cluster serves the whole module (nothing here kills a component), run twice: plain and
`keychain up --tls`; every test uses its own keys. Each test records its client operations and
checks them for linearizability.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from e2e_cluster import (
    LocalCluster,
    RecordedClient,
    RecordedHTTP,
    VersionedRecorder,
    active_members,
    assert_linearizable,
    chain_members,
    cmdline,
    pid_alive,
    running_cluster,
    wait_active,
)

from keychain.client import PreconditionFailed
from keychain.proto import chain_pb2, chain_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc
from keychain.testing.history import Recorder

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "tls"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("e2e-api") / "data", tls=request.param) as running:
        yield running


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    rec = VersionedRecorder()
    yield rec
    assert_linearizable(rec, tmp_path / "history.jsonl")


@pytest.fixture
def kc(cluster: LocalCluster, recorder: Recorder) -> Iterator[RecordedClient]:
    client = RecordedClient(cluster.url, recorder, "c1", **cluster.client_options())
    yield client
    client.close()


@pytest.fixture
def http(cluster: LocalCluster, recorder: Recorder) -> Iterator[RecordedHTTP]:
    client = RecordedHTTP(cluster.url, recorder, "h1", **cluster.client_options())
    yield client
    client.close()


def test_up_prints_the_proxy_url_and_a_ready_line(cluster: LocalCluster) -> None:
    assert any(cluster.url in line for line in cluster.output), cluster.output
    ready = cluster.ready_lines()
    assert ready, cluster.output
    # `ready` waits for the whole chain: every node has joined when it is printed.
    assert "3 nodes" in ready[0] and "of 3" not in ready[0], ready


def test_cluster_json_names_every_component_by_its_own_pid(cluster: LocalCluster) -> None:
    doc = cluster.cluster_json()
    assert doc["proxy"] == cluster.url
    components = doc["components"]
    kinds = sorted(c["kind"] for c in components)
    assert kinds == ["coordinator"] * 3 + ["node"] * 3 + ["proxy"], components
    names = [c["name"] for c in components]
    assert len(set(names)) == len(names), names
    for c in components:
        assert set(c) >= {"name", "kind", "pid", "address"}, c
        host, _, port = c["address"].rpartition(":")
        assert host == "127.0.0.1" and port.isdigit(), c
        assert pid_alive(c["pid"]), c
        # The pid is the component itself (killing it kills that component), not a wrapper.
        argv = cmdline(c["pid"])
        assert c["kind"] in argv, (c, argv)
        if c["kind"] != "proxy":
            assert c["name"] in argv, (c, argv)


def test_cluster_report_uses_the_names_of_cluster_json(cluster: LocalCluster) -> None:
    doc = cluster.cluster_json()
    nodes = {c["name"]: c["address"] for c in doc["components"] if c["kind"] == "node"}
    coordinators = {c["name"] for c in doc["components"] if c["kind"] == "coordinator"}

    with cluster.client() as plain:
        report = wait_active(plain)
    assert report["chains"][0]["epoch"] >= 1
    members = chain_members(report)
    assert {m["id"]: m["address"] for m in members} == nodes
    roles = [m["role"] for m in members]
    assert roles == ["head", "middle", "tail"], members
    for m in members:
        assert m["healthy"] is True, m
        assert isinstance(m["reads"], int) and isinstance(m["writes"], int), m
    assert {m["id"] for m in report["coordinator"]["members"]} == coordinators
    assert report["coordinator"]["leader"] in coordinators


def test_put_get_delete(kc: RecordedClient, http: RecordedHTTP) -> None:
    response = http.put("e2e-basic", content=b"hello")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["key"] == "e2e-basic" and body["version"] >= 1
    version = body["version"]

    response = http.get("e2e-basic")
    assert response.status_code == 200
    assert response.content == b"hello"
    assert response.headers["etag"] == f'"{version}"'

    assert kc.get("e2e-basic") == "hello"
    assert kc.put("e2e-basic", "world") > version
    assert kc.get("e2e-basic") == "world"

    response = http.delete("e2e-basic")
    assert response.status_code == 200, response.text
    response = http.get("e2e-basic")
    assert response.status_code == 404
    assert response.json()["error"] and response.json()["message"]
    assert kc.get("e2e-basic") is None


def test_keys_with_slashes_spaces_and_unicode_round_trip(kc: RecordedClient) -> None:
    for key in ("dir/sub/leaf", "with space", "ключ", "a.b", "..", "%2F"):
        kc.put(key, f"value of {key}")
    for key in ("dir/sub/leaf", "with space", "ключ", "a.b", "..", "%2F"):
        assert kc.get(key) == f"value of {key}"


def test_compare_and_set_and_create_only(kc: RecordedClient, http: RecordedHTTP) -> None:
    v1 = kc.put("e2e-cas", "one", if_absent=True)
    with pytest.raises(PreconditionFailed) as refused:
        kc.put("e2e-cas", "again", if_absent=True)
    assert refused.value.current_version == v1

    v2 = kc.put("e2e-cas", "two", if_version=v1)
    assert v2 > v1
    with pytest.raises(PreconditionFailed) as stale:
        kc.put("e2e-cas", "three", if_version=v1)
    assert stale.value.current_version == v2
    assert kc.get("e2e-cas") == "two"

    response = http.put("e2e-cas", content=b"x", headers={"If-Match": f'"{v1}"'})
    assert response.status_code == 412
    assert response.json()["error"] == "precondition_failed"

    response = http.delete("e2e-cas", headers={"If-Match": f'"{v1}"'})
    assert response.status_code == 412
    assert kc.get("e2e-cas") == "two"
    kc.delete("e2e-cas", if_version=v2)
    assert kc.get("e2e-cas") is None


def test_bad_requests_get_json_errors_and_change_nothing(kc: RecordedClient, http: RecordedHTTP) -> None:
    kc.put("e2e-bad", "kept")

    too_big = http.put("e2e-bad", content=b"x" * ((1 << 20) + 1))
    assert too_big.status_code == 413, too_big.text
    assert too_big.json()["error"] == "too_large"

    long_key = http.put("k" * 1025, content=b"v")
    assert long_key.status_code == 413, long_key.text

    bad_tag = http.put("e2e-bad", content=b"v", headers={"If-Match": "seven"})
    assert bad_tag.status_code == 400, bad_tag.text
    assert set(bad_tag.json()) >= {"error", "message"}

    not_utf8 = http.put("%FF%FE", content=b"v")
    assert not_utf8.status_code == 400, not_utf8.text

    bad_consistency = http.get("e2e-bad", params={"consistency": "sometimes"})
    assert bad_consistency.status_code == 400, bad_consistency.text

    missing = http.get("e2e-never-written")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"

    assert kc.get("e2e-bad") == "kept"


def test_every_node_serves_reads_and_reads_see_the_latest_write(
    cluster: LocalCluster, kc: RecordedClient
) -> None:
    with cluster.client() as plain:
        before = {m["id"]: m["reads"] for m in active_members(wait_active(plain))}
        for i in range(40):
            kc.put("e2e-ryw", f"v{i}")
            # Straight after the write is acknowledged, whichever node serves the read.
            assert kc.get("e2e-ryw", consistency="strong") == f"v{i}"
            # A key last written four iterations ago: the read must not be older than that write.
            assert kc.get(f"e2e-ryw-{i % 4}") == (f"w{i - 4}" if i >= 4 else None)
            kc.put(f"e2e-ryw-{i % 4}", f"w{i}")
        after = {m["id"]: m["reads"] for m in active_members(plain.cluster())}
    grew = {node: after.get(node, 0) - count for node, count in before.items()}
    assert all(delta > 0 for delta in grew.values()), f"reads served per node during the test: {grew}"


def test_eventual_reads_return_a_written_value(kc: RecordedClient) -> None:
    for i in range(10):
        kc.put("e2e-eventual", f"e{i}")
        assert kc.get("e2e-eventual", consistency="eventual") in {f"e{j}" for j in range(i + 1)}


def test_cli_against_the_running_cluster(cluster: LocalCluster) -> None:
    def keychain(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-P", "-m", "keychain", *args, "--url", cluster.url, *cluster.cli_args()],
            capture_output=True, text=True, timeout=60,
        )

    put = keychain("put", "e2e-cli", "from the command line")
    assert put.returncode == 0, put.stderr
    got = keychain("get", "e2e-cli")
    assert got.returncode == 0 and got.stdout == "from the command line", (got.stdout, got.stderr)
    status = keychain("status")
    assert status.returncode == 0, status.stderr
    for name in ("node-1", "node-2", "node-3"):
        assert name in status.stdout


def reachable_without_credentials(component: dict, ca: str | None) -> list[str]:
    """The internal endpoints of a component that answer a caller with no certificate or token:
    a plaintext gRPC status call, and a status read of the coordinator's admin API over plain HTTP
    or over HTTPS (trusting the cluster's CA `ca`) without a client certificate."""
    open_endpoints = []
    with grpc.insecure_channel(component["address"]) as channel:
        try:
            if component["kind"] == "node":
                chain_pb2_grpc.ChainNodeStub(channel).GetStatus(chain_pb2.StatusRequest(), timeout=5)
            else:
                stub = coordinator_pb2_grpc.CoordinatorStub(channel)
                stub.GetClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=5)
            open_endpoints.append(f"{component['name']} gRPC {component['address']}")
        except grpc.RpcError:
            pass
    if component["kind"] == "coordinator":
        host_port = component["http"].split("://", 1)[1]
        attempts: list[tuple[str, ssl.SSLContext | bool]] = [(f"http://{host_port}/v1/status", False)]
        if ca is not None:
            attempts.append((f"https://{host_port}/v1/status", ssl.create_default_context(cafile=ca)))
        for url, verify in attempts:
            try:
                answer = httpx.get(url, timeout=5, verify=verify)
            except httpx.HTTPError:
                continue
            if answer.status_code < 400:
                open_endpoints.append(f"{component['name']} admin {url}")
    return open_endpoints


def test_internal_endpoints_reachable_without_credentials(cluster: LocalCluster) -> None:
    """Plain: every node and coordinator answers anyone. With --tls: none does (the issue's goal)."""
    internal = [c for c in cluster.cluster_json()["components"] if c["kind"] != "proxy"]
    ca = cluster.client_options().get("cacert")
    reachable = [endpoint for c in internal for endpoint in reachable_without_credentials(c, ca)]
    if cluster.tls:
        assert reachable == [], reachable
    else:  # 3 nodes, 3 coordinators with their admin API: the exposure --tls closes
        assert len(reachable) == 9, reachable
