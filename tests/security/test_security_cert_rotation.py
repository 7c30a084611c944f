"""Certificates rotated on disk while writes flow: a whole new CA, in the three steps of a rotation
without downtime (trust both CAs; reissue every certificate from the new one; drop the old CA).

Three coordinators and two nodes with mutual TLS, a writer at the head and a reader at every node.
No write may fail and no acknowledged write may be lost. At the end only the new CA is trusted:
a fresh client with a certificate of the old CA is refused, the harness's own fresh connections
(new certificate, new CA alone) get through, and every process logs that it reloaded its server
and client credentials; no process was restarted.
"""

from __future__ import annotations

import time

import grpc
import pytest
from cluster_harness import ChainLoad, ProcessCluster, running_cluster, wait_for

from keychain import tls
from keychain.proto import chain_pb2, chain_pb2_grpc

pytestmark = [pytest.mark.process, pytest.mark.timeout(150)]

HOSTS = ["127.0.0.1", "localhost"]
SETTLE = 2.5  # seconds for every process to make a call (heartbeats, Raft) on the new files


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path, coordinators=3, nodes=2, tls=True) as c:
        yield c


def rotate_every_certificate(c: ProcessCluster, ca: tls.Issued) -> None:
    """Reissue every process's certificate (and the harness's) from `ca`, in place."""
    everyone = [(p.kind, p.name, c.tls_files[p.name]) for p in c.procs.values()]
    everyone += [("proxy", "harness", c.client_files), ("operator", "harness", c.operator_files)]
    for kind, name, files in everyone:
        tls.write_pem(tls.issue_certificate(ca, kind=kind, name=name, hosts=HOSTS), files.cert, files.key)


def test_a_new_ca_and_new_certificates_are_picked_up_while_writes_continue(cluster, tmp_path):
    c = cluster
    ca_file = c.client_files.ca  # one CA bundle file, shared by every process
    old_ca = c.ca
    old_proxy = tls.issue_files(tmp_path, old_ca, kind="proxy", name="old-proxy", hosts=HOSTS)
    new_ca = tls.issue_ca(c.chain)
    load = ChainLoad(c, timeout=2.0)
    load.start()
    try:
        time.sleep(1.0)
        rotation_began = time.monotonic()
        ca_file.write_bytes(old_ca.cert_pem + new_ca.cert_pem)  # 1. trust both
        time.sleep(SETTLE)
        rotate_every_certificate(c, new_ca)  # 2. new certificates
        time.sleep(SETTLE)
        tls.write_pem(new_ca, ca_file)  # 3. the old CA no longer trusted
        time.sleep(SETTLE)
        rotated = time.monotonic()
        wait_for("writes acknowledged after the rotation", lambda: load.writes_acked_since(rotated) >= 20,
                 timeout=10)
    finally:
        load.finish()

    writes = [op for op in load.ops if op.kind == "write"]
    failed = [op for op in load.ops if not op.ok]
    assert writes and not failed, f"{len(failed)} of {len(load.ops)} operations failed during the rotation"
    assert load.writes_acked_since(rotation_began) > 50
    for name in c.names("node"):
        for key, value in load.acked.items():
            reply = c.read(name, key)
            assert reply.error.code == chain_pb2.OK and reply.value == value, f"{name} lost {key!r}"

    # Only the new CA is trusted now, by every server, on new connections.
    head = next(n for n, r in c.roles().items() if r == "head")
    for name in c.names("node"):
        cert, key, _ = old_proxy.read()
        with grpc.secure_channel(c.procs[name].address,
                                 grpc.ssl_channel_credentials(new_ca.cert_pem, key, cert)) as ch:
            with pytest.raises(grpc.RpcError) as refused:
                chain_pb2_grpc.ChainNodeStub(ch).GetStatus(chain_pb2.StatusRequest(), timeout=3)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert c.write(head, b"after", b"rotation", request_id="after-1").error.code == chain_pb2.OK
    assert c.status() is not None  # the admin API over HTTPS with the new operator certificate

    for p in c.procs.values():
        log = p.log_path.read_text(errors="replace")
        assert "tls reloaded server certificate" in log, f"{p.name} never reloaded its server credentials"
        assert "tls reloaded client certificate" in log, f"{p.name} never reloaded its client credentials"
        assert p.alive, f"{p.name} died"
