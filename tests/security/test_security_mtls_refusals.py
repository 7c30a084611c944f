"""A chain (one coordinator, two nodes) as real processes with mutual TLS, and callers that must be
turned away: without a certificate, with one from another CA, of the wrong kind, or expired. Each
refusal is checked to have applied nothing: no key written, no member removed, the same epoch and
leader. Positive controls show the same calls succeed with the right certificate, and a proxy with
its certificate serves writes and reads through the chain.
"""

from __future__ import annotations

import datetime
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cluster_harness import ProcessCluster, free_ports, running_cluster, wait_for

from keychain import tls
from keychain.proto import (
    chain_pb2,
    chain_pb2_grpc,
    coordinator_pb2,
    coordinator_pb2_grpc,
    raft_pb2,
    raft_pb2_grpc,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

HOSTS = ["127.0.0.1", "localhost"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[ProcessCluster]:
    with running_cluster(tmp_path_factory.mktemp("mtls"), coordinators=1, nodes=2, tls=True) as c:
        yield c


def head_of(c: ProcessCluster) -> str:
    return next(n for n, role in c.roles().items() if role == "head")


def snapshot(c: ProcessCluster) -> tuple:
    """What a refused call must not change: the leader, the chain's epoch and members."""
    chain = c.chain_view()
    assert chain is not None
    return c.leader(), chain["epoch"], sorted((m["id"], m["state"]) for m in chain["members"])


def channel_as(address: str, files: tls.TlsFiles | None) -> grpc.Channel:
    if files is None:
        return grpc.insecure_channel(address)
    cert, key, ca = files.read()
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, key, cert))


def call_code(address: str, files: tls.TlsFiles | None, call) -> grpc.StatusCode:
    """The status a call made with `files` (None: plaintext) ends with."""
    with channel_as(address, files) as ch:
        try:
            call(ch)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def write_at(key: bytes):
    def call(ch: grpc.Channel) -> None:
        op = chain_pb2.WriteOp(request_id=f"intruder-{key.decode()}", key=key, kind=chain_pb2.PUT, value=b"x")
        chain_pb2_grpc.ChainNodeStub(ch).Write(chain_pb2.WriteRequest(epoch=1_000, ops=[op]), timeout=3)
    return call


def remove_member(node_id: str):
    def call(ch: grpc.Channel) -> None:
        coordinator_pb2_grpc.CoordinatorStub(ch).RemoveMember(
            coordinator_pb2.RemoveMemberRequest(chain="main", node_id=node_id), timeout=3)
    return call


def raft_vote(ch: grpc.Channel) -> None:
    """A vote request in a far-future term: applied, it would depose the leader."""
    vote = raft_pb2.Message(type=raft_pb2.MSG_VOTE, to="coord-1", sender="coord-9", term=10_000,
                            log_term=10_000, index=10_000)
    raft_pb2_grpc.RaftStub(ch).Step(raft_pb2.MessageBatch(messages=[vote]), timeout=3)


def admin(c: ProcessCluster, method: str, path: str, *, files: tls.TlsFiles | None = None,
          token: str | None = None, scheme: str = "https") -> int | str:
    """The admin API's status code for a request as the given caller, or the connection error's name."""
    context = None
    if scheme == "https":
        context = ssl.create_default_context(cafile=str(c.client_files.ca))
        if files is not None:
            context.load_cert_chain(files.cert, files.key)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{scheme}://{c.procs['coord-1'].http}{path}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError) as exc:
        return type(getattr(exc, "reason", exc)).__name__


def assert_not_written(c: ProcessCluster, key: bytes) -> None:
    for name in c.names("node"):
        assert c.read(name, key).error.code == chain_pb2.NOT_FOUND, f"{name} holds {key!r}"


def test_the_right_certificates_get_in(cluster):
    c = cluster
    head = head_of(c)
    reply = c.write(head, b"allowed", b"yes", request_id="allowed-1")
    assert reply.error.code == chain_pb2.OK
    assert all(c.read(n, b"allowed").value == b"yes" for n in c.names("node"))
    assert admin(c, "GET", "/v1/status", files=c.operator_files) == 200
    assert admin(c, "GET", "/v1/status", token=c.admin_token) == 200


def test_a_plaintext_client_is_refused_by_a_node_a_coordinator_and_the_admin_api(cluster):
    c = cluster
    before = snapshot(c)
    head, tail = head_of(c), next(n for n, r in c.roles().items() if r == "tail")
    coordinator = c.procs["coord-1"].address
    # No TLS at all: the handshake fails before any RPC reaches a handler.
    assert call_code(c.procs[head].address, None, write_at(b"plain")) == grpc.StatusCode.UNAVAILABLE
    assert call_code(coordinator, None, remove_member(tail)) == grpc.StatusCode.UNAVAILABLE
    assert call_code(coordinator, None, raft_vote) == grpc.StatusCode.UNAVAILABLE
    assert admin(c, "DELETE", f"/v1/chains/main/members/{tail}", scheme="http") != 200
    # TLS without a client certificate or a token: 401, on reads as well as changes.
    assert admin(c, "DELETE", f"/v1/chains/main/members/{tail}") == 401
    assert admin(c, "GET", "/v1/status") == 401
    assert admin(c, "DELETE", f"/v1/chains/main/members/{tail}", token="wrong-token") == 401
    assert snapshot(c) == before
    assert_not_written(c, b"plain")


def test_a_certificate_from_another_ca_is_refused(cluster, tmp_path):
    c = cluster
    before = snapshot(c)
    other_ca = tls.issue_ca("main")  # the same chain's name, but not its CA
    as_proxy = tls.issue_files(tmp_path, other_ca, kind="proxy", name="p", hosts=HOSTS)
    as_admin = tls.issue_files(tmp_path, other_ca, kind="admin", name="a", hosts=HOSTS)
    # Trusting the real CA (so only the client side is foreign).
    as_proxy = tls.TlsFiles(as_proxy.cert, as_proxy.key, c.client_files.ca)
    as_admin = tls.TlsFiles(as_admin.cert, as_admin.key, c.client_files.ca)
    tail = next(n for n, r in c.roles().items() if r == "tail")
    assert call_code(c.procs[head_of(c)].address, as_proxy, write_at(b"foreign")) == grpc.StatusCode.UNAVAILABLE
    assert call_code(c.procs["coord-1"].address, as_admin, remove_member(tail)) == grpc.StatusCode.UNAVAILABLE
    assert admin(c, "DELETE", f"/v1/chains/main/members/{tail}", files=as_admin) not in (200, 401, 403)
    assert snapshot(c) == before
    assert_not_written(c, b"foreign")


def test_a_proxy_certificate_cannot_speak_raft_or_remove_a_member(cluster, tmp_path):
    c = cluster
    before = snapshot(c)
    tail = next(n for n, r in c.roles().items() if r == "tail")
    coordinator = c.procs["coord-1"].address
    assert call_code(coordinator, c.client_files, raft_vote) == grpc.StatusCode.PERMISSION_DENIED
    assert call_code(coordinator, c.client_files, remove_member(tail)) == grpc.StatusCode.PERMISSION_DENIED
    # Nor reconfigure a node.
    assert call_code(c.procs[tail].address, c.client_files,
                     lambda ch: chain_pb2_grpc.ChainNodeStub(ch).Configure(chain_pb2.ConfigureRequest(), timeout=3)
                     ) == grpc.StatusCode.PERMISSION_DENIED
    time.sleep(0.5)  # a deposed leader would show by now
    assert snapshot(c) == before
    # A node's certificate may not write at a node either: only proxies send client writes.
    as_node = tls.issue_files(tmp_path, c.ca, kind="node", name="node-9", hosts=HOSTS)
    assert call_code(c.procs[head_of(c)].address, as_node, write_at(b"by-node")) == grpc.StatusCode.PERMISSION_DENIED
    assert_not_written(c, b"by-node")


def test_a_node_certificate_cannot_call_the_admin_api(cluster):
    c = cluster
    before = snapshot(c)
    node_files = c.tls_files["node-1"]
    tail = next(n for n, r in c.roles().items() if r == "tail")
    assert admin(c, "DELETE", f"/v1/chains/main/members/{tail}", files=node_files) == 403
    assert admin(c, "POST", "/v1/chains/other", files=node_files) == 403
    assert admin(c, "GET", "/v1/status", files=node_files) == 403
    assert snapshot(c) == before
    assert [ch["name"] for ch in c.status()["chains"]] == ["main"]


def test_an_expired_certificate_is_refused(cluster, tmp_path):
    c = cluster
    before = snapshot(c)
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    expired = {kind: tls.issue_certificate(c.ca, kind=kind, name="old", hosts=HOSTS, not_before=long_ago,
                                           valid_for=datetime.timedelta(days=1)) for kind in ("proxy", "operator")}
    files = {}
    for kind, issued in expired.items():
        assert issued.not_after < datetime.datetime.now(datetime.UTC)
        files[kind] = tls.TlsFiles(tmp_path / f"{kind}.pem", tmp_path / f"{kind}-key.pem", c.client_files.ca)
        tls.write_pem(issued, files[kind].cert, files[kind].key)
    assert call_code(c.procs[head_of(c)].address, files["proxy"], write_at(b"expired")) == grpc.StatusCode.UNAVAILABLE
    tail = next(n for n, r in c.roles().items() if r == "tail")
    assert admin(c, "DELETE", f"/v1/chains/main/members/{tail}", files=files["operator"]) not in (200, 401, 403)
    assert snapshot(c) == before
    assert_not_written(c, b"expired")


def test_no_internal_endpoint_answers_without_credentials(cluster):
    assert cluster.endpoints_open_without_credentials() == []


def test_a_proxy_with_its_certificate_serves_the_chain_over_mutual_tls(cluster):
    c = cluster
    files = c.issue("proxy", "proxy-1")
    (port,) = free_ports(1)
    log_path = c.root / "logs" / "proxy-1.log"
    with open(log_path, "ab") as log:
        proxy = subprocess.Popen([*c.python, "proxy", "--listen", f"127.0.0.1:{port}", "--coordinator",
                                  c.coordinator_list, "--chain", "main", *files.argv()],
                                 stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("the proxy ready", lambda: _http(f"{base}/readyz")[0] == 200, timeout=20, interval=0.1)
        assert _http(f"{base}/v1/kv/through-proxy", "PUT", b"hello")[0] in (200, 201, 204)
        status, body = _http(f"{base}/v1/kv/through-proxy")
        assert status == 200 and b"hello" in body
    except BaseException:
        print(Path(log_path).read_text(errors="replace")[-3000:])
        raise
    finally:
        proxy.terminate()
        proxy.wait(10)


def _http(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=body)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (TimeoutError, OSError):
        return 0, b""
