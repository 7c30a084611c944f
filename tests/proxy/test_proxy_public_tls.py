"""The proxy's public ports over TLS: HTTPS and gRPC with --https-cert/--https-key, a client
certificate required with --https-client-ca, and the bearer token checked as before."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from keychain.proxy.config import PublicTls, config_from_args
from proxy_double import ChainDouble
from proxy_harness import RunningProxy, running_proxy

from keychain import tls
from keychain.client import Client, KeychainError, Unauthorized
from keychain.proto import kv_pb2, kv_pb2_grpc

TOKEN = "s3cret"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@dataclass
class Pki:
    ca: Path
    server: tls.TlsFiles  # the proxy's certificate for 127.0.0.1
    client: tls.TlsFiles  # an admin client of the same CA
    stranger: tls.TlsFiles  # an admin client of another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    home = tmp_path_factory.mktemp("pki")
    ca = tls.issue_ca("test")
    server = tls.issue_files(home / "ours", ca, kind="proxy", name="proxy", hosts=["127.0.0.1"])
    client = tls.issue_files(home / "ours", ca, kind="admin", name="alice")
    stranger = tls.issue_files(home / "theirs", tls.issue_ca("test"), kind="admin", name="mallory")
    return Pki(server.ca, server, client, stranger)


@pytest.fixture
def https_proxy(chain: ChainDouble, pki: Pki) -> Iterator[RunningProxy]:
    public = PublicTls(cert=pki.server.cert, key=pki.server.key, client_ca=pki.ca)
    with running_proxy(chain, wait_ready=False, public_tls=public, auth_token=TOKEN) as running:
        with client_of(running, pki, pki.client, retries=10) as kc:
            kc.cluster()  # retried until the proxy knows the chain
        yield running


def client_of(proxy: RunningProxy, pki: Pki, files: tls.TlsFiles | None, **options: object) -> Client:
    certificate = {"cert": files.cert, "key": files.key} if files is not None else {}
    settings: dict[str, object] = {"cacert": pki.ca, "token": TOKEN, "retries": 0, **certificate, **options}
    return Client(proxy.url, **settings)  # type: ignore[arg-type]


def test_https_with_a_client_certificate_and_the_token_serves(https_proxy: RunningProxy, pki: Pki) -> None:
    assert https_proxy.url.startswith("https://")
    with client_of(https_proxy, pki, pki.client) as kc:
        version = kc.put("k", b"over tls")
        assert kc.get("k") == (b"over tls", version)


def test_https_still_requires_the_bearer_token(https_proxy: RunningProxy, pki: Pki, chain: ChainDouble) -> None:
    kc = Client(https_proxy.url, cacert=pki.ca, cert=pki.client.cert, key=pki.client.key, retries=0)
    with kc, pytest.raises(Unauthorized):
        kc.put("k", b"no token")
    assert chain.state.write_attempts == []


@pytest.mark.parametrize("who", ["no certificate", "another CA"])
def test_a_client_without_a_certificate_of_the_ca_is_refused(
    https_proxy: RunningProxy, pki: Pki, chain: ChainDouble, who: str
) -> None:
    files = None if who == "no certificate" else pki.stranger
    with client_of(https_proxy, pki, files) as kc, pytest.raises(KeychainError):
        kc.put("k", b"refused")
    assert chain.state.write_attempts == []


def test_plain_http_and_an_untrusted_server_are_refused(https_proxy: RunningProxy, pki: Pki) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(https_proxy.url.replace("https://", "http://") + "/healthz", timeout=5)
    # The client checks the proxy's certificate: the system CAs do not know this one.
    kc = Client(https_proxy.url, cert=pki.client.cert, key=pki.client.key, token=TOKEN, retries=0)
    with kc, pytest.raises(KeychainError, match="CERTIFICATE_VERIFY_FAILED"):
        kc.get("k")


def test_grpc_over_tls_with_a_client_certificate_and_the_token(https_proxy: RunningProxy, pki: Pki) -> None:
    cert, key, ca = pki.client.read()
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    with grpc.secure_channel(https_proxy.grpc_address, credentials) as channel:
        kv = kv_pb2_grpc.KVStub(channel)
        assert kv.Put(kv_pb2.PutRequest(key=b"g", value=b"1"), metadata=tuple(AUTH.items()), timeout=10).version >= 1
        assert kv.Get(kv_pb2.GetRequest(key=b"g"), metadata=tuple(AUTH.items()), timeout=10).value == b"1"
        with pytest.raises(grpc.RpcError) as no_token:
            kv.Get(kv_pb2.GetRequest(key=b"g"), timeout=10)
        assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(https_proxy.grpc_address) as plain:
        with pytest.raises(grpc.RpcError) as refused:
            kv_pb2_grpc.KVStub(plain).Get(kv_pb2.GetRequest(key=b"g"), metadata=tuple(AUTH.items()), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_https_without_a_client_ca_needs_no_client_certificate(chain: ChainDouble, pki: Pki) -> None:
    public = PublicTls(cert=pki.server.cert, key=pki.server.key)
    with running_proxy(chain, wait_ready=False, public_tls=public) as proxy, \
            Client(proxy.url, cacert=pki.ca, retries=5) as kc:
        kc.put("open", b"1")
        assert kc.get("open")[0] == b"1"


def test_https_flags_go_together_and_files_must_be_readable(tmp_path: Path, pki: Pki) -> None:
    base = ["--coordinator", "127.0.0.1:1", "--chain", "c"]
    config = config_from_args([*base, "--https-cert", str(pki.server.cert), "--https-key", str(pki.server.key),
                               "--https-client-ca", str(pki.ca)], environ={})
    assert config.public_tls == PublicTls(pki.server.cert, pki.server.key, pki.ca)
    assert config_from_args(base, environ={}).public_tls is None
    for argv, complaint in [
        (["--https-cert", str(pki.server.cert)], "go together"),
        (["--https-client-ca", str(pki.ca)], "needs --https-cert"),
        (["--https-cert", str(tmp_path / "missing.pem"), "--https-key", str(pki.server.key)], "missing.pem"),
    ]:
        run = subprocess.run([sys.executable, "-P", "-m", "keychain", "proxy", *base, *argv],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and complaint in run.stderr, (argv, run.stderr)
