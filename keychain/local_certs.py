"""The certificates of a `keychain up --tls` cluster: a throwaway CA and one certificate per component.

They live in `<data-dir>/tls/`: `ca.pem` and `ca-key.pem` (the CA, kept so a later run can issue
certificates for components added since, such as a node given by a larger --nodes), and
`<kind>-<name>.pem` with `<kind>-<name>-key.pem` for every coordinator, node, the proxy, and
`admin-local.pem`, the client certificate the supervisor, the CLI and curl use. A later run on the
same data dir reuses every file still valid for a day more and issues only what is missing or
about to expire. Every certificate names its component kind (see `keychain.access`) and is valid
for 127.0.0.1 and localhost, where the local cluster listens.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from keychain import tls
from keychain.access import ADMIN, Identity
from keychain.client import tls_context

HOSTS = ("127.0.0.1", "localhost")
PROXY_NAME = "proxy"  # the proxy's component name in `keychain up`
ADMIN_NAME = "local"  # the admin client certificate's name: admin-local.pem
RENEW_BEFORE = datetime.timedelta(days=1)  # a certificate closer than this to expiry is issued again


@dataclass(frozen=True)
class LocalCertificates:
    """Where each component's TLS files are, by component name, and the admin client's."""

    directory: Path
    components: dict[str, tls.TlsFiles]
    admin: tls.TlsFiles

    @property
    def ca(self) -> Path:
        return self.admin.ca

    @classmethod
    def ensure(cls, directory: Path, chain: str, components: Iterable[tuple[str, str]]) -> LocalCertificates:
        """The CA and a certificate for every (name, kind) in `components`, made when missing."""
        ca = _ensure_ca(directory, chain)
        files = {name: _ensure_certificate(directory, ca, kind, name) for name, kind in components}
        return cls(directory, files, _ensure_certificate(directory, ca, ADMIN, ADMIN_NAME))

    def component_args(self, name: str) -> list[str]:
        """`--tls-cert/--tls-key/--tls-ca` for the component `name`."""
        return self.components[name].argv()

    def proxy_https_args(self) -> list[str]:
        """The proxy's public ports: HTTPS with its own certificate, clients need one of the CA."""
        files = self.components[PROXY_NAME]
        return ["--https-cert", str(files.cert), "--https-key", str(files.key), "--https-client-ca", str(files.ca)]

    def describe(self) -> dict[str, str]:
        """What cluster.json says under `tls`: the CA and the admin client certificate."""
        return {"ca": str(self.ca), "cert": str(self.admin.cert), "key": str(self.admin.key)}

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context with the admin certificate, for the supervisor's own checks."""
        context = tls_context(self.ca, self.admin.cert, self.admin.key)
        assert context is not None
        return context


def _ensure_ca(directory: Path, chain: str) -> tls.Issued:
    cert, key = directory / "ca.pem", directory / "ca-key.pem"
    if cert.exists() and key.exists():
        ca = tls.load_issued(cert, key)
        if tls.ca_chain(ca) == chain and _lasts(ca):
            return ca
    ca = tls.issue_ca(chain)
    tls.write_pem(ca, cert, key)
    return ca


def _ensure_certificate(directory: Path, ca: tls.Issued, kind: str, name: str) -> tls.TlsFiles:
    files = tls.TlsFiles(directory / f"{kind}-{name}.pem", directory / f"{kind}-{name}-key.pem", directory / "ca.pem")
    if _still_good(files, ca, Identity(tls.ca_chain(ca), kind, name)):
        return files
    return tls.issue_files(directory, ca, kind=kind, name=name, hosts=HOSTS)


def _still_good(files: tls.TlsFiles, ca: tls.Issued, identity: Identity) -> bool:
    """Whether the files hold a certificate of this CA for `identity`, its key, and time left."""
    try:
        files.load_checked()
        issued = tls.load_issued(files.cert)
        issued.certificate.verify_directly_issued_by(ca.certificate)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return issued.identity == identity and files.ca.read_bytes() == ca.cert_pem and _lasts(issued)


def _lasts(issued: tls.Issued) -> bool:
    return issued.not_after - datetime.datetime.now(datetime.UTC) > RENEW_BEFORE
