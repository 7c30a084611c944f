"""Mutual TLS inside a chain's cluster: certificates, credentials that follow rotation, the gate.

Issuance (`issue_ca`, `issue_certificate`, `write_pem`, `issue_files`) uses the `cryptography`
library: a CA per chain, and per-component certificates whose SAN URI `keychain://<chain>/<kind>/<name>`
names the component (`keychain.access.Identity`), with DNS and IP SANs for the hosts it serves on.

A component is given three files (`TlsFiles`: `--tls-cert`, `--tls-key`, `--tls-ca`) and reads them
again whenever they change on disk, so certificates rotate without a restart:
- servers use gRPC's dynamic server credentials, whose fetcher gRPC calls at each handshake; they
  require a client certificate signed by the CA (`add_port`);
- clients get a `RotatingChannel`, which builds a fresh secure channel when the files change and
  leaves calls already running on the old one to finish;
- `AuthorizationInterceptor` reads the caller's identity from the certificate of the connection and
  applies `keychain.access.authorize` before any handler runs: UNAUTHENTICATED or PERMISSION_DENIED,
  nothing applied.
Without files every function here falls back to plaintext, as local tests and `keychain up` use.

Written here by hand, because gRPC has no credentials that reload client files, no identity-aware
authorization, and uvicorn no peer certificate in its requests: the rotating channel, the
interceptor, and `PeerCertificateProtocol` for the admin HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import inspect
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keychain import channel_policy
from keychain.access import KINDS, Decision, Identity, authorize
from keychain.tls_files import TlsFiles, add_tls_arguments, tls_files_from_args

log = logging.getLogger(__name__)

CA_VALIDITY = datetime.timedelta(days=3650)
CERT_VALIDITY = datetime.timedelta(days=90)
# Clock skew between machines: certificates are valid from a little before they are made.
BACKDATE = datetime.timedelta(minutes=5)
# How often (at most) a client looks at its files for a rotation.
RECHECK_SECONDS = 1.0


# ---------------------------------------------------------------------------- issuance


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key (the key may be None for a CA read without its key)."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey | None

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        if self.key is None:
            raise ValueError("this certificate was loaded without its private key")
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def identity(self) -> Identity | None:
        return identity_of_certificate(self.certificate)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def issue_ca(chain: str, *, valid_for: datetime.timedelta = CA_VALIDITY,
             not_before: datetime.datetime | None = None) -> Issued:
    """A new self-signed CA for `chain` (its subject's OU names the chain)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = (not_before or _now()) - BACKDATE
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "KeychainDB"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, chain),
        x509.NameAttribute(NameOID.COMMON_NAME, f"KeychainDB CA for chain {chain}"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + BACKDATE + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def ca_chain(ca: Issued) -> str:
    """The chain a CA made by `issue_ca` is for."""
    values = ca.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not values:
        raise ValueError("not a KeychainDB CA: its subject names no chain")
    return str(values[0].value)


def _san_hosts(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_certificate(ca: Issued, *, kind: str, name: str, hosts: Iterable[str] = (),
                      valid_for: datetime.timedelta = CERT_VALIDITY,
                      not_before: datetime.datetime | None = None) -> Issued:
    """A certificate signed by `ca` for the component `kind`/`name` of the CA's chain, valid as a
    server for `hosts` (DNS names or IP addresses) and as a client. `not_before` in the past with a
    short `valid_for` makes an expired certificate (for tests)."""
    if ca.key is None:
        raise ValueError("the CA's private key is needed to issue certificates")
    identity = Identity(ca_chain(ca), kind, name)
    key = ec.generate_private_key(ec.SECP256R1())
    start = (not_before or _now()) - BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "KeychainDB"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + BACKDATE + valid_for)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri),
                                                    *_san_hosts(hosts)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     content_commitment=False, data_encipherment=False, key_agreement=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write whole or not at all: a reader never sees half a file (rotation reads files live)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_pem(issued: Issued, cert_path: Path | str, key_path: Path | str | None = None) -> None:
    """Write the certificate (and, if `key_path`, the private key, readable by its owner alone)."""
    if key_path is not None:  # the key first: a reader checks the pair matches before using it
        _write_atomically(Path(key_path), issued.key_pem, 0o600)
    _write_atomically(Path(cert_path), issued.cert_pem, 0o644)


def load_issued(cert_path: Path | str, key_path: Path | str | None = None) -> Issued:
    """A certificate (and key) read back from PEM files, e.g. a CA kept on disk."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    key = None
    if key_path is not None:
        loaded = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: not an elliptic-curve private key")
        key = loaded
    return Issued(cert, key)


def issue_files(directory: Path | str, ca: Issued, *, kind: str, name: str, hosts: Iterable[str] = (),
                valid_for: datetime.timedelta = CERT_VALIDITY) -> TlsFiles:
    """Issue a certificate for `kind`/`name` and write it, its key and the CA certificate into
    `directory` as `<kind>-<name>.pem`, `<kind>-<name>-key.pem` and `ca.pem`."""
    d = Path(directory)
    files = TlsFiles(d / f"{kind}-{name}.pem", d / f"{kind}-{name}-key.pem", d / "ca.pem")
    write_pem(issue_certificate(ca, kind=kind, name=name, hosts=hosts, valid_for=valid_for), files.cert, files.key)
    if not files.ca.exists() or files.ca.read_bytes() != ca.cert_pem:
        write_pem(ca, files.ca)
    return files


# ---------------------------------------------------------------------------- identity


def identity_of_certificate(cert: x509.Certificate) -> Identity | None:
    """The KeychainDB identity a certificate's SAN URI names, if any."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        identity = Identity.from_uri(uri)
        if identity is not None:
            return identity
    return None


@functools.lru_cache(maxsize=256)
def identity_of_pem(pem: bytes) -> Identity | None:
    """The identity of a PEM certificate (cached: every call on a connection shows the same one)."""
    try:
        return identity_of_certificate(x509.load_pem_x509_certificate(pem))
    except ValueError:
        return None


def identity_of_context(context: grpc.aio.ServicerContext) -> Identity | None:
    """The caller's identity, from the client certificate gRPC verified for this call's connection."""
    pems = context.auth_context().get("x509_pem_cert")
    return identity_of_pem(pems[0]) if pems else None


# ---------------------------------------------------------------------------- gRPC servers


class _ServerCertificates:
    """The fetcher gRPC calls at each handshake: a new configuration when the files changed."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._stamp = files.stamp()
        self.initial = self._configuration(*files.load_checked())

    @staticmethod
    def _configuration(cert: bytes, key: bytes, ca: bytes) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        stamp = self.files.stamp()
        if stamp == self._stamp:
            return None
        try:
            config = self._configuration(*self.files.load_checked())
        except (OSError, ValueError) as exc:  # half-way through a rotation: keep serving the old ones
            log.warning("tls reload deferred files=%s reason=%s", self.files.cert, exc)
            return None
        self._stamp = stamp
        log.info("tls reloaded server certificate=%s", self.files.cert)
        return config


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Credentials that require a client certificate from the CA and reload the files on change."""
    certificates = _ServerCertificates(files)
    return grpc.dynamic_ssl_server_credentials(certificates.initial, certificates,
                                               require_client_authentication=True)


def add_port(server: grpc.aio.Server, address: str, files: TlsFiles | None) -> int:
    """Listen on `address`: mutual TLS with `files`, plaintext without. Returns the port (0: failed)."""
    if files is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, server_credentials(files))


_ABORT_CODE = {Decision.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
               Decision.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED}


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):
    """Refuses a call before its handler runs unless the caller's certificate names a kind that
    `policy` lets call the method."""

    def __init__(self, policy: Callable[[str, Identity | None], Decision] = authorize) -> None:
        self.policy = policy
        # method -> (the service's handler, its guarded copy): built once per method, not per call.
        self._guarded: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        known = self._guarded.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        policy = self.policy

        async def check(context: grpc.aio.ServicerContext) -> None:
            identity = identity_of_context(context)
            decision = policy(method, identity)
            if decision is not Decision.ALLOW:
                who = identity.uri if identity else "no KeychainDB certificate"
                log.info("tls refused method=%s caller=%s decision=%s", method, who, decision.value)
                await context.abort(_ABORT_CODE[decision], f"{who} may not call {method}")

        guarded = _guarded(handler, check)
        self._guarded[method] = (handler, guarded)
        return guarded


def _guarded(handler: grpc.RpcMethodHandler, check: Callable[[Any], Awaitable[None]]) -> grpc.RpcMethodHandler:
    """The same handler, with `check(context)` first."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _guard_call(handler.unary_unary, check), handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _guard_call(handler.unary_stream, check), handler.request_deserializer, handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _guard_call(handler.stream_unary, check), handler.request_deserializer, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(
        _guard_call(handler.stream_stream, check), handler.request_deserializer, handler.response_serializer)


def _guard_call(behavior: Callable[..., Any], check: Callable[[Any], Awaitable[None]]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):
        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(context)
            async for item in behavior(request, context):
                yield item
        return streaming

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await check(context)
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result
    return unary


def server_interceptors(files: TlsFiles | None) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors an internal server needs: the authorization gate when TLS is on."""
    return [] if files is None else [AuthorizationInterceptor()]


# ---------------------------------------------------------------------------- gRPC clients


# The last credentials each set of files gave that belonged together: a channel opened while the
# files are half-way through a rotation (new certificate, old key) starts on these instead of failing.
_last_good: dict[TlsFiles, grpc.ChannelCredentials] = {}


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Client credentials from `files`; ValueError when they do not belong together."""
    cert, key, ca = files.load_checked()
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    _last_good[files] = credentials
    return credentials


class RotatingChannel(grpc.aio.Channel):
    """A secure channel that follows its TLS files: when they change it builds a new channel for the
    calls that follow; calls already running on the old one finish there (it is closed with this).

    Stubs bind multi-callables once, so these resolve the current channel at every call."""

    def __init__(self, target: str, files: TlsFiles, options: Sequence[tuple[str, Any]] = ()) -> None:
        self.target = target
        self.files = files
        self.options = list(options)
        stamp: tuple[tuple[int, int, int], ...] | None = files.stamp()
        try:
            credentials = channel_credentials(files)
        except (OSError, ValueError) as exc:
            if files not in _last_good:
                raise
            # Half-way through a rotation: start on the last good credentials, and keep no stamp so
            # the next check loads the files again.
            log.warning("tls files mid-rotation, using the last good ones files=%s reason=%s", files.cert, exc)
            credentials, stamp = _last_good[files], None
        self._stamp = stamp
        self._channel = grpc.aio.secure_channel(target, credentials, options=self.options)
        self._retired: list[grpc.aio.Channel] = []
        self._checked_at = 0.0
        self.rotations = 0

    def current(self) -> grpc.aio.Channel:
        """The channel new calls go on, rebuilt first if the files changed."""
        now = asyncio.get_running_loop().time()
        if now - self._checked_at >= RECHECK_SECONDS:
            self._checked_at = now
            stamp = self.files.stamp()
            if stamp != self._stamp:
                try:
                    credentials = channel_credentials(self.files)
                except (OSError, ValueError) as exc:
                    log.warning("tls reload deferred files=%s reason=%s", self.files.cert, exc)
                else:
                    self._stamp = stamp
                    self._retire(self._channel)
                    self._channel = grpc.aio.secure_channel(self.target, credentials, options=self.options)
                    self.rotations += 1
                    log.info("tls reloaded client certificate=%s target=%s", self.files.cert, self.target)
        return self._channel

    def _retire(self, channel: grpc.aio.Channel) -> None:
        self._retired.append(channel)
        # Streams outlive a rotation; but keep at most two old channels: older ones are closed.
        while len(self._retired) > 2:
            old = self._retired.pop(0)
            asyncio.get_running_loop().create_task(old.close(grace=5.0))

    def _callable(self, kind: str, method: str, kwargs: dict[str, Any]) -> _RotatingMultiCallable:
        return _RotatingMultiCallable(self, kind, method, kwargs)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._callable("unary_unary", method, _named(args, kwargs))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._callable("unary_stream", method, _named(args, kwargs))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._callable("stream_unary", method, _named(args, kwargs))

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._callable("stream_stream", method, _named(args, kwargs))

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    async def close(self, grace: float | None = None) -> None:
        for channel in [*self._retired, self._channel]:
            await channel.close(grace)
        self._retired.clear()

    async def __aenter__(self) -> RotatingChannel:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


def _named(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = ("request_serializer", "response_deserializer")
    return {**dict(zip(names, args, strict=False)), **kwargs}


class _RotatingMultiCallable:
    """A stub's method: made on the channel current at each call (cached per channel)."""

    def __init__(self, owner: RotatingChannel, kind: str, method: str, kwargs: dict[str, Any]) -> None:
        self.owner, self.kind, self.method, self.kwargs = owner, kind, method, kwargs
        self._for: grpc.aio.Channel | None = None
        self._callable: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = self.owner.current()
        if channel is not self._for:
            self._callable = getattr(channel, self.kind)(self.method, **self.kwargs)
            self._for = channel
        return self._callable(*args, **kwargs)


def channel(target: str, files: TlsFiles | None, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """An internal channel to `target`: mutual TLS following `files`, or plaintext without them; it
    reconnects and notices a dead connection as `keychain.channel_policy` says (`options` add to that)."""
    options = channel_policy.channel_options(options)
    if files is None:
        return grpc.aio.insecure_channel(target, options=options)
    return RotatingChannel(target, files, options)


# ---------------------------------------------------------------------------- HTTPS (admin API)


def server_ssl_context(files: TlsFiles, *, require_client_cert: bool) -> ssl.SSLContext:
    """A TLS server context from the files; client certificates are verified against the CA, and
    required or only asked for."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_server_context(ctx, files)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def _load_server_context(ctx: ssl.SSLContext, files: TlsFiles) -> None:
    files.load_checked()
    ctx.load_cert_chain(files.cert, files.key)
    ctx.load_verify_locations(cafile=files.ca)


def client_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """A TLS client context trusting the CA and presenting the component's certificate."""
    ctx = ssl.create_default_context(cafile=str(files.ca))
    ctx.load_cert_chain(files.cert, files.key)
    return ctx


async def reload_server_context(ctx: ssl.SSLContext, files: TlsFiles, interval: float = RECHECK_SECONDS) -> None:
    """Keep `ctx` following the files (new handshakes get the new certificate; a new CA is trusted
    besides the old one, which stays trusted until a restart). Runs until cancelled."""
    stamp = files.stamp()
    while True:
        await asyncio.sleep(interval)
        new = files.stamp()
        if new == stamp:
            continue
        try:
            _load_server_context(ctx, files)
        except (OSError, ValueError, ssl.SSLError) as exc:
            log.warning("tls reload deferred files=%s reason=%s", files.cert, exc)
            continue
        stamp = new
        log.info("tls reloaded https certificate=%s", files.cert)


def peer_identity_of_scope(scope: dict[str, Any]) -> Identity | None:
    """The identity of the client certificate of an ASGI request, from the `tls` extension."""
    chain = scope.get("extensions", {}).get("tls", {}).get("client_cert_chain") or []
    return identity_of_pem(chain[0].encode()) if chain else None


def peer_certificate_protocol(base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """A uvicorn HTTP protocol class that puts the verified client certificate of the connection
    into every request's scope, as the ASGI TLS extension (`client_cert_chain`) describes."""

    class PeerCertificateProtocol(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if not der:
                return
            pem = ssl.DER_cert_to_PEM_cert(der)
            app = self.app

            async def with_certificate(scope: dict[str, Any], receive: Any, send: Any) -> None:
                extensions = scope.setdefault("extensions", {})
                extensions["tls"] = {**extensions.get("tls", {}), "client_cert_chain": [pem]}
                await app(scope, receive, send)

            self.app = with_certificate

    return PeerCertificateProtocol


__all__ = [
    "KINDS", "AuthorizationInterceptor", "Identity", "Issued", "RotatingChannel", "TlsFiles",
    "add_port", "add_tls_arguments", "ca_chain", "channel", "channel_credentials", "client_ssl_context",
    "identity_of_context", "identity_of_pem", "issue_ca", "issue_certificate",
    "issue_files", "load_issued", "peer_certificate_protocol", "peer_identity_of_scope",
    "reload_server_context", "server_credentials", "server_interceptors", "server_ssl_context",
    "tls_files_from_args", "write_pem",
]
