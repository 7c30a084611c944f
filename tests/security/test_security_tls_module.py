"""keychain.tls in one process: what certificates say, how the files are given and checked, and that
a server and a rotating channel follow files rewritten under them."""

from __future__ import annotations

import argparse
import datetime
import ipaddress

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from keychain import tls
from keychain.access import Identity

HOSTS = ["127.0.0.1", "localhost"]


def test_a_component_certificate_names_its_identity_and_hosts_and_is_signed_by_the_chain_ca():
    ca = tls.issue_ca("orders")
    issued = tls.issue_certificate(ca, kind="node", name="node-1", hosts=HOSTS)
    assert tls.ca_chain(ca) == "orders"
    assert issued.identity == Identity("orders", "node", "node-1")
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    issued.certificate.verify_directly_issued_by(ca.certificate)
    with pytest.raises(ValueError, match="unknown component kind"):
        tls.issue_certificate(ca, kind="janitor", name="x")


def test_the_three_flags_go_together():
    parser = argparse.ArgumentParser()
    tls.add_tls_arguments(parser)
    assert tls.tls_files_from_args(parser.parse_args([])) is None
    files = tls.tls_files_from_args(parser.parse_args(["--tls-cert", "c", "--tls-key", "k", "--tls-ca", "a"]))
    assert files is not None and files.argv() == ["--tls-cert", "c", "--tls-key", "k", "--tls-ca", "a"]
    with pytest.raises(ValueError, match="go together"):
        tls.tls_files_from_args(parser.parse_args(["--tls-cert", "c"]))


def test_a_key_that_is_not_the_certificates_is_refused_and_the_private_key_is_private(tmp_path):
    ca = tls.issue_ca("orders")
    files = tls.issue_files(tmp_path, ca, kind="proxy", name="p")
    assert files.key.stat().st_mode & 0o077 == 0
    other = tls.issue_certificate(ca, kind="proxy", name="p")
    tls.write_pem(other, files.cert)  # half-way through a rotation: the new certificate, the old key
    with pytest.raises(ValueError, match="not the private key"):
        files.load_checked()


async def _serve(files: tls.TlsFiles) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(interceptors=tls.server_interceptors(files))
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = tls.add_port(server, "127.0.0.1:0", files)
    await server.start()
    return server, port


async def _check(channel: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_server_and_client_follow_a_new_ca_written_under_them(tmp_path, monkeypatch):
    monkeypatch.setattr(tls, "RECHECK_SECONDS", 0.0)
    old = tls.issue_ca("orders")
    server_files = tls.issue_files(tmp_path / "server", old, kind="node", name="n", hosts=HOSTS)
    client_files = tls.issue_files(tmp_path / "client", old, kind="proxy", name="p")
    server, port = await _serve(server_files)
    channel = tls.channel(f"127.0.0.1:{port}", client_files)
    try:
        assert isinstance(channel, tls.RotatingChannel)
        assert await _check(channel) == grpc.StatusCode.OK
        new = tls.issue_ca("orders")
        for files, kind, name, hosts in ((server_files, "node", "n", HOSTS), (client_files, "proxy", "p", [])):
            tls.write_pem(new, files.ca)
            tls.write_pem(tls.issue_certificate(new, kind=kind, name=name, hosts=hosts), files.cert, files.key)
        assert await _check(channel) == grpc.StatusCode.OK  # a new channel, a new handshake: new CA both sides
        assert channel.rotations == 1
        # The server no longer trusts the old CA, and presents a certificate of the new one.
        stale = tls.issue_files(tmp_path / "stale", old, kind="proxy", name="p")
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", tls.channel_credentials(stale)) as ch:
            assert await _check(ch) == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()
        await server.stop(None)


async def test_an_expired_client_certificate_fails_the_handshake(tmp_path):
    ca = tls.issue_ca("orders")
    server, port = await _serve(tls.issue_files(tmp_path / "s", ca, kind="node", name="n", hosts=HOSTS))
    expired = tls.TlsFiles(tmp_path / "old.pem", tmp_path / "old-key.pem", tmp_path / "s" / "ca.pem")
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
    tls.write_pem(tls.issue_certificate(ca, kind="proxy", name="p", not_before=long_ago,
                                        valid_for=datetime.timedelta(days=1)), expired.cert, expired.key)
    try:
        channel = tls.channel(f"127.0.0.1:{port}", expired)
        assert await _check(channel) == grpc.StatusCode.UNAVAILABLE
        await channel.close()
    finally:
        await server.stop(None)
