"""The client and the CLI against an https:// proxy that asks for a client certificate:
--cacert/--cert/--key (or KEYCHAIN_CACERT/KEYCHAIN_CERT/KEYCHAIN_KEY, or cacert=/cert=/key=)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from keychain.proxy.config import PublicTls
from proxy_double import ChainDouble
from proxy_harness import RunningProxy, running_proxy

from keychain import commands, tls
from keychain.client import AsyncClient, Client, tls_context


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tls.TlsFiles]:
    home = tmp_path_factory.mktemp("pki")
    ca = tls.issue_ca("test")
    return {
        "server": tls.issue_files(home, ca, kind="proxy", name="proxy", hosts=["127.0.0.1"]),
        "client": tls.issue_files(home, ca, kind="admin", name="cli"),
    }


@pytest.fixture
def https_proxy(chain: ChainDouble, files: dict[str, tls.TlsFiles]) -> Iterator[RunningProxy]:
    server = files["server"]
    public = PublicTls(cert=server.cert, key=server.key, client_ca=server.ca)
    with running_proxy(chain, wait_ready=False, public_tls=public) as running:
        with Client(running.url, **client_files(files), retries=10) as kc:
            kc.cluster()  # retried until the proxy knows the chain
        yield running


def client_files(files: dict[str, tls.TlsFiles]) -> dict[str, Path]:
    client = files["client"]
    return {"cacert": client.ca, "cert": client.cert, "key": client.key}


def test_the_cli_takes_cacert_cert_and_key_as_flags(
    https_proxy: RunningProxy, files: dict[str, tls.TlsFiles], capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [arg for name, path in client_files(files).items() for arg in (f"--{name}", str(path))]
    assert commands.main(["put", "k", "by flags", "--url", https_proxy.url, *flags]) == 0
    assert commands.main(["get", "k", "--url", https_proxy.url, *flags]) == 0
    assert capsys.readouterr().out.endswith("by flags")
    # Without the client certificate the proxy refuses the connection: nothing is written.
    ca_only = ["--cacert", str(files["client"].ca)]
    assert commands.main(["put", "k2", "x", "--url", https_proxy.url, *ca_only]) != 0
    assert commands.main(["get", "k2", "--url", https_proxy.url, *flags]) == commands.EXIT_NOT_FOUND


def test_the_cli_takes_them_from_the_environment_too(
    https_proxy: RunningProxy,
    files: dict[str, tls.TlsFiles],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KEYCHAIN_URL", https_proxy.url)
    for name, path in client_files(files).items():
        monkeypatch.setenv(f"KEYCHAIN_{name.upper()}", str(path))
    assert commands.main(["put", "e", "from env"]) == 0
    assert commands.main(["get", "e"]) == 0
    assert capsys.readouterr().out.endswith("from env")
    assert commands.main(["bench", "--duration", "1", "--concurrency", "2", "--keys", "5", "--mix", "mixed"]) == 0


def test_unreadable_tls_files_are_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        commands.main(["get", "k", "--url", "https://127.0.0.1:1", "--cacert", str(tmp_path / "nope.pem")])
    assert usage.value.code == commands.EXIT_USAGE
    assert "--cacert" in capsys.readouterr().err


def test_the_async_client_takes_the_same_options(https_proxy: RunningProxy, files: dict[str, tls.TlsFiles]) -> None:
    async def scenario() -> tuple[bytes, int]:
        async with AsyncClient(https_proxy.url, **client_files(files)) as kc:
            await kc.put("a", b"async over tls")
            return await kc.get("a")

    assert asyncio.run(scenario())[0] == b"async over tls"


def test_a_key_without_its_certificate_is_refused() -> None:
    assert tls_context() is None
    with pytest.raises(ValueError, match="certificate"):
        tls_context(key="client-key.pem")
