"""A Chain's certificates: what each component is issued, when it is renewed, the Secrets that hold them.

Pure decisions with no I/O (`wanted_certificates`, `held_from_secret`, `plan_certificates`) and the
issuing itself (`issue`, through `keychain.tls` and the `cryptography` library), which returns the
Secret objects to write. The reconciler reads the live Secrets, asks `plan_certificates` what to do,
and writes what `issue` returns.

Each component kind has one certificate shared by its pods, kept in the Secret `<chain>-tls-<kind>`
with the keys `tls.crt`, `tls.key` and `ca.crt` (the layout cert-manager writes too, so pods mount
either the same way). The CA's certificate and key are kept in `<chain>-tls-ca`. A certificate is
renewed once two thirds of its lifetime have passed, and the CA likewise; while a renewed CA's
predecessor is still valid, `ca.crt` holds both, so components trust peers of either until every
certificate was reissued. The kubelet rewrites the mounted files and the components reload them:
nothing restarts.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from keychain.operator.naming import COORDINATOR, NODE, PROXY, Names, labels, owner_reference
from keychain.operator.spec import ChainSpec

from keychain import tls
from keychain.access import OPERATOR, Identity

# The kinds of component the operator issues a certificate for.
CERTIFIED_KINDS = (NODE, COORDINATOR, PROXY, OPERATOR)
# A certificate is renewed once this share of its lifetime has passed.
RENEW_AT = 2 / 3
CERT_VALIDITY = tls.CERT_VALIDITY
CA_VALIDITY = tls.CA_VALIDITY

CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
CA_KEY = "ca.crt"
CA_PRIVATE_KEY = "ca.key"
SECRET_TYPE = "kubernetes.io/tls"


@dataclass(frozen=True)
class Wanted:
    """What one kind's certificate must say: its identity and the DNS names its pods are reached by."""

    kind: str
    identity: Identity
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Held:
    """A certificate as found in a Secret: its validity, identity, hosts and the CA that signed it."""

    not_before: datetime.datetime
    not_after: datetime.datetime
    identity_uri: str | None
    hosts: tuple[str, ...]
    issuer_key_id: bytes | None


@dataclass(frozen=True)
class Plan:
    """What to issue now: a new CA (then every certificate), and the kinds whose certificate to (re)issue."""

    new_ca: bool
    kinds: tuple[str, ...]

    @property
    def nothing(self) -> bool:
        return not self.new_ca and not self.kinds


def wanted_certificates(names: Names) -> dict[str, Wanted]:
    """The certificate of every kind: nodes and coordinators by their pods' names under their headless
    Services, the proxy by its Service's names, the operator as a client only."""
    ns = names.namespace

    def service(name: str) -> tuple[str, ...]:
        return (name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local")

    def pods(name: str) -> tuple[str, ...]:
        return (f"*.{name}.{ns}.svc", f"*.{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc")

    hosts = {NODE: pods(names.nodes), COORDINATOR: pods(names.coordinator), PROXY: service(names.proxy), OPERATOR: ()}
    return {kind: Wanted(kind, Identity(names.chain, kind, f"{names.chain}-{kind}"), hosts[kind])
            for kind in CERTIFIED_KINDS}  # fmt: skip


def secret_name(names: Names, kind: str) -> str:
    """The Secret holding the certificate of `kind` (or, for "ca", the CA)."""
    return f"{names.chain}-tls-{kind}"


def held_of(certificate: x509.Certificate) -> Held:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hosts = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        hosts = ()
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        aki = None
    identity = tls.identity_of_certificate(certificate)
    return Held(certificate.not_valid_before_utc, certificate.not_valid_after_utc,
                identity.uri if identity else None, hosts, aki)  # fmt: skip


def secret_pem(secret: Mapping[str, Any] | None, key: str) -> bytes | None:
    """One PEM value of a Secret as the API returns it (base64 `data`), None if absent or unreadable."""
    import base64
    import binascii

    value = ((secret or {}).get("data") or {}).get(key)
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def held_from_secret(secret: Mapping[str, Any] | None) -> Held | None:
    """The certificate a component's Secret holds, None if there is none or it does not parse or
    its key is missing (so it is issued again)."""
    pem, key = secret_pem(secret, CERT_KEY), secret_pem(secret, KEY_KEY)
    if pem is None or key is None:
        return None
    try:
        return held_of(x509.load_pem_x509_certificate(pem))
    except ValueError:
        return None


def renewal_due(held: Held, now: datetime.datetime) -> bool:
    """Whether two thirds of the certificate's lifetime have passed (or it is not yet valid)."""
    if now < held.not_before:
        return True
    return now >= held.not_before + (held.not_after - held.not_before) * RENEW_AT


def plan_certificates(wanted: Mapping[str, Wanted], held: Mapping[str, Held | None], ca: Held | None,
                      ca_key_id: bytes | None, now: datetime.datetime) -> Plan:
    """What to issue: a new CA when there is none or it is due; a certificate of a kind when it is
    missing, due, names another identity or other hosts, or was signed by another CA than the current."""
    if ca is None or renewal_due(ca, now):
        return Plan(True, tuple(wanted))
    kinds = []
    for kind, want in wanted.items():
        have = held.get(kind)
        if (have is None or renewal_due(have, now) or have.identity_uri != want.identity.uri
                or set(have.hosts) != set(want.hosts) or have.issuer_key_id != ca_key_id):
            kinds.append(kind)
    return Plan(False, tuple(kinds))


@dataclass(frozen=True)
class Authority:
    """The Chain's CA: the current one (with its key) and the trust bundle (it, then a still valid predecessor)."""

    current: tls.Issued
    bundle: bytes

    @property
    def key_id(self) -> bytes:
        return x509.SubjectKeyIdentifier.from_public_key(self.current.certificate.public_key()).digest


def authority_from_secret(secret: Mapping[str, Any] | None) -> Authority | None:
    """The CA a `<chain>-tls-ca` Secret holds, None if it holds none usable."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    bundle, key_pem = secret_pem(secret, CA_KEY), secret_pem(secret, CA_PRIVATE_KEY)
    if bundle is None or key_pem is None:
        return None
    try:
        certificates = x509.load_pem_x509_certificates(bundle)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError:
        return None
    if not certificates or not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if key.public_key() != certificates[0].public_key():
        return None
    return Authority(tls.Issued(certificates[0], key), bundle)


def new_authority(chain: str, previous: Authority | None, now: datetime.datetime) -> Authority:
    """A new CA; its predecessor stays in the trust bundle while it is valid."""
    ca = tls.issue_ca(chain, valid_for=CA_VALIDITY, not_before=now)
    bundle = ca.cert_pem
    if previous is not None and previous.current.not_after > now:
        bundle += previous.current.cert_pem
    return Authority(ca, bundle)


def authority_secret(spec: ChainSpec, names: Names, authority: Authority) -> dict[str, Any]:
    return _secret(spec, names, "ca", {CA_KEY: authority.bundle, CA_PRIVATE_KEY: authority.current.key_pem},
                   secret_type="Opaque")  # fmt: skip


def component_secret(spec: ChainSpec, names: Names, authority: Authority, want: Wanted,
                     now: datetime.datetime) -> dict[str, Any]:
    """A new certificate for `want`, signed by the current CA, as its Secret."""
    issued = tls.issue_certificate(authority.current, kind=want.kind, name=want.identity.name, hosts=want.hosts,
                                   valid_for=CERT_VALIDITY, not_before=now)  # fmt: skip
    return _secret(spec, names, want.kind, {CERT_KEY: issued.cert_pem, KEY_KEY: issued.key_pem, CA_KEY: authority.bundle})


def _secret(spec: ChainSpec, names: Names, kind: str, data: dict[str, bytes], *,
            secret_type: str = SECRET_TYPE) -> dict[str, Any]:
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(names, kind), "namespace": spec.namespace,
                     "labels": labels(spec.name, None if kind in ("ca", OPERATOR) else kind),
                     "ownerReferences": [owner_reference(spec)]},
        "type": secret_type,
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }  # fmt: skip
