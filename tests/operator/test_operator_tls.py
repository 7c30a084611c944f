"""A Chain's mutual TLS on Kubernetes: the certificates the operator issues and renews, the pods that mount
them, cert-manager Certificates for spec.tls.issuerRef, and the NetworkPolicies."""

from __future__ import annotations

import asyncio
import base64
import datetime
from typing import Any

import jsonschema
import kmock
import kubernetes_validate
import pytest
from conftest import (
    CHAIN,
    CHAINS,
    CHART,
    IMAGE,
    NAMESPACE,
    RELEASE,
    RELEASE_NAMESPACE,
    STATEFULSETS,
    chain_body,
    live,
    plaintext_coordinators_at,
    writes,
)
from cryptography import x509
from keychain.operator import certificates
from keychain.operator.certificates import Held, plan_certificates, renewal_due, wanted_certificates
from keychain.operator.kube import KubeApi
from keychain.operator.main import operator_peer, parse_args
from keychain.operator.naming import Names
from keychain.operator.reconcile import Reconciler
from keychain.operator.rendering import render
from keychain.operator.spec import ChainSpec, ChainSpecError

from keychain.access import Decision, authorize, authorize_admin_http
from keychain.testing.helm import render_chart
from keychain.testing.rbac import ApiRequest, Policy, ServiceAccount
from keychain.tls import identity_of_certificate

NAMES = Names(CHAIN, NAMESPACE)
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SECRETS = "v1/secrets"
KINDS = ("node", "coordinator", "proxy", "operator")
OPERATOR_PEER = operator_peer("keychain-system", ["app.kubernetes.io/name=keychain-operator"])


def spec_of(spec: dict[str, Any] | None = None) -> ChainSpec:
    return ChainSpec.from_resource(chain_body(spec), default_image=IMAGE)


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in objects}


def certificate_in(secret: dict[str, Any], key: str = "tls.crt") -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))


def held(start: datetime.datetime, days: int, **changes: Any) -> Held:
    values = {"identity_uri": None, "hosts": (), "issuer_key_id": b"ca"} | changes
    return Held(start, start + datetime.timedelta(days=days), **values)


# ---------------------------------------------------------------------------- the pure plan


def test_a_new_chain_gets_a_ca_and_every_kinds_certificate():
    plan = plan_certificates(wanted_certificates(NAMES), {}, None, None, T0)
    assert plan.new_ca and plan.kinds == KINDS


def test_a_certificate_is_renewed_once_two_thirds_of_its_life_have_passed():
    cert = held(T0, 90)
    assert not renewal_due(cert, T0 + datetime.timedelta(days=59))
    assert renewal_due(cert, T0 + datetime.timedelta(days=60))
    assert renewal_due(cert, T0 - datetime.timedelta(days=1)), "not yet valid: issued by a clock ahead"


def test_only_the_due_mismatched_or_foreign_certificates_are_reissued():
    wanted = wanted_certificates(NAMES)
    good = {kind: held(T0, 90, identity_uri=w.identity.uri, hosts=w.hosts) for kind, w in wanted.items()}
    ca = held(T0, 3650)
    now = T0 + datetime.timedelta(days=10)
    assert plan_certificates(wanted, good, ca, b"ca", now).nothing

    changed = dict(good)
    changed["node"] = held(T0 - datetime.timedelta(days=55), 90, identity_uri=wanted["node"].identity.uri,
                           hosts=wanted["node"].hosts)  # 65 of 90 days gone
    changed["proxy"] = held(T0, 90, identity_uri=wanted["proxy"].identity.uri, hosts=("old.example",))
    changed["coordinator"] = held(T0, 90, identity_uri=wanted["coordinator"].identity.uri,
                                  hosts=wanted["coordinator"].hosts, issuer_key_id=b"another ca")
    changed["operator"] = None
    plan = plan_certificates(wanted, changed, ca, b"ca", now)
    assert not plan.new_ca and plan.kinds == KINDS


def test_a_due_ca_is_replaced_and_every_certificate_reissued_by_the_new_one():
    wanted = wanted_certificates(NAMES)
    good = {kind: held(T0, 90, identity_uri=w.identity.uri, hosts=w.hosts) for kind, w in wanted.items()}
    plan = plan_certificates(wanted, good, held(T0 - datetime.timedelta(days=2500), 3650), b"ca", T0)
    assert plan.new_ca and plan.kinds == KINDS


def test_a_renewed_ca_keeps_its_still_valid_predecessor_trusted():
    old = certificates.new_authority(CHAIN, None, T0)
    new = certificates.new_authority(CHAIN, old, T0 + datetime.timedelta(days=2500))
    bundle = x509.load_pem_x509_certificates(new.bundle)
    assert bundle == [new.current.certificate, old.current.certificate]
    expired = certificates.new_authority(CHAIN, old, T0 + datetime.timedelta(days=4000))
    assert x509.load_pem_x509_certificates(expired.bundle) == [expired.current.certificate]


def test_issued_certificates_name_their_kind_and_hosts_and_chain_to_the_ca():
    spec = spec_of()
    authority = certificates.new_authority(CHAIN, None, T0)
    node_secret = certificates.component_secret(spec, NAMES, authority, wanted_certificates(NAMES)["node"], T0)
    for manifest in (node_secret, certificates.authority_secret(spec, NAMES, authority)):
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)
    assert node_secret["type"] == "kubernetes.io/tls" and set(node_secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    cert = certificate_in(node_secret)
    cert.verify_directly_issued_by(authority.current.certificate)
    assert identity_of_certificate(cert).uri == "keychain://mychain/node/mychain-node"
    hosts = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "*.mychain-node.ns1.svc" in hosts  # mychain-node-0.mychain-node.ns1.svc, the node's advertised name
    assert authorize("/keychain.chain.ChainNode/Link", identity_of_certificate(cert)) is Decision.ALLOW

    operator = certificate_in(certificates.component_secret(spec, NAMES, authority,
                                                            wanted_certificates(NAMES)["operator"], T0))
    assert authorize_admin_http(identity_of_certificate(operator)) is Decision.ALLOW
    assert authorize_admin_http(identity_of_certificate(cert)) is Decision.PERMISSION_DENIED


# ---------------------------------------------------------------------------- rendering


def test_tls_is_on_by_default_and_each_pod_mounts_its_kinds_secret_whole():
    objects = by_key(render(spec_of()))
    for kind, name, secret in [("StatefulSet", "mychain-node", "mychain-tls-node"),
                               ("StatefulSet", "mychain-coord", "mychain-tls-coordinator"),
                               ("Deployment", "mychain-proxy", "mychain-tls-proxy")]:  # fmt: skip
        pod = objects[(kind, name)]["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "tls")
        assert volume["secret"]["secretName"] == secret
        (container,) = pod["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
        # A subPath mount would never see the kubelet's updates, and renewals would not reach the component.
        assert "subPath" not in mount and mount["mountPath"] == "/var/run/secrets/keychain.dev/tls"
        args = container["args"]
        assert args[args.index("--tls-cert") + 1] == "/var/run/secrets/keychain.dev/tls/tls.crt"
        assert args[args.index("--tls-ca") + 1] == "/var/run/secrets/keychain.dev/tls/ca.crt"
    coordinator = objects[("StatefulSet", "mychain-coord")]["spec"]["template"]["spec"]["containers"][0]
    assert coordinator["readinessProbe"]["httpGet"]["scheme"] == "HTTPS" and "--admin-open-reads" in coordinator["args"]


def test_with_tls_disabled_nothing_mounts_certificates_and_probes_speak_plaintext():
    objects = by_key(render(spec_of({"tls": {"enabled": False}})))
    node = objects[("StatefulSet", "mychain-node")]["spec"]["template"]["spec"]
    assert [v["name"] for v in node["volumes"]] == ["tmp"]
    assert not any(a.startswith("--tls") for a in node["containers"][0]["args"])
    assert node["containers"][0]["readinessProbe"]["grpc"]["port"] == 7100
    assert not any(kind == "Certificate" for kind, _ in objects)


def test_turning_tls_on_or_off_rolls_the_pods_but_a_renewal_changes_no_template():
    on, off = by_key(render(spec_of())), by_key(render(spec_of({"tls": {"enabled": False}})))
    key = ("StatefulSet", "mychain-node")
    assert on[key]["spec"]["template"] != off[key]["spec"]["template"]
    assert by_key(render(spec_of()))[key] == on[key], "rendering depends on the spec alone, not on certificates"


def test_internal_ports_are_open_to_the_chains_pods_and_the_operator_and_the_proxy_to_anyone():
    objects = by_key(render(spec_of(), operator_peer=OPERATOR_PEER))
    chain_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "keychain",
                                                  "app.kubernetes.io/instance": CHAIN}}}  # fmt: skip
    coordinator = objects[("NetworkPolicy", "mychain-coord")]["spec"]
    assert coordinator["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "coordinator"
    assert coordinator["ingress"] == [{"from": [chain_pods, OPERATOR_PEER],
                                       "ports": [{"protocol": "TCP", "port": 7000}, {"protocol": "TCP", "port": 7080}]}]
    node = objects[("NetworkPolicy", "mychain-node")]["spec"]
    assert node["ingress"][0] == {"from": [chain_pods, OPERATOR_PEER], "ports": [{"protocol": "TCP", "port": 7100}]}
    assert node["ingress"][1] == {"ports": [{"protocol": "TCP", "port": 9100}]}, "metrics for any scraper"
    proxy = objects[("NetworkPolicy", "mychain-proxy")]["spec"]
    assert proxy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 8081}]}]
    for policy in (coordinator, node, proxy):
        assert policy["policyTypes"] == ["Ingress"]


def test_the_proxy_is_open_only_to_spec_proxy_allow_from_when_given():
    peers = [{"namespaceSelector": {"matchLabels": {"team": "web"}}}, {"ipBlock": {"cidr": "10.0.0.0/8"}}]
    policy = by_key(render(spec_of({"proxy": {"allowFrom": peers}})))[("NetworkPolicy", "mychain-proxy")]
    assert policy["spec"]["ingress"][0]["from"] == peers
    kubernetes_validate.validate(policy, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("spec, message", [
    ({"proxy": {"allowFrom": [{"podSelectr": {}}]}}, "spec.proxy.allowFrom[0]"),
    ({"proxy": {"allowFrom": [{}]}}, "spec.proxy.allowFrom[0]"),
    ({"tls": {"enabled": False, "issuerRef": {"name": "ca"}}}, "spec.tls.issuerRef"),
    ({"tls": {"issuerRef": {"kind": "Issuer"}}}, "spec.tls.issuerRef.name"),
    ({"tls": {"issuerRef": {"name": "ca", "kind": "Vault"}}}, "spec.tls.issuerRef.kind"),
])  # fmt: skip
def test_a_bad_tls_or_allow_from_spec_is_refused_with_the_field_named(spec, message):
    with pytest.raises(ChainSpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        spec_of(spec)


def test_the_operator_finds_its_own_pod_by_its_namespace_and_labels():
    args = parse_args(["--operator-namespace", "ops", "--operator-label", "a=b", "--operator-label", "c=d"])
    assert args.operator_peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
                                  "podSelector": {"matchLabels": {"a": "b", "c": "d"}}}  # fmt: skip
    assert parse_args([]).operator_peer is None
    with pytest.raises(SystemExit):
        parse_args(["--operator-label", "a=b"])


# cert-manager's Certificate (cert-manager.io/v1) as far as the operator fills it in: the fields, their types
# and the values cert-manager accepts. Unknown fields are refused, as the API server's strict validation does.
_KEY_USAGES = ["signing", "digital signature", "content commitment", "key encipherment", "key agreement",
               "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
               "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
               "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
CERTIFICATE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Certificate"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["secretName", "issuerRef"],
            "additionalProperties": False,
            "properties": {
                "secretName": {"type": "string", "minLength": 1},
                "commonName": {"type": "string", "maxLength": 64},
                "dnsNames": {"type": "array", "items": {"type": "string"}},
                "uris": {"type": "array", "items": {"type": "string"}},
                "duration": _DURATION,
                "renewBefore": _DURATION,
                "usages": {"type": "array", "items": {"enum": _KEY_USAGES}},
                "privateKey": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                        "size": {"type": "integer"},
                        "encoding": {"enum": ["PKCS1", "PKCS8"]},
                        "rotationPolicy": {"enum": ["Never", "Always"]},
                    },
                },
                "issuerRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                   "group": {"type": "string"}},
                },
            },
        },
    },
}


def test_an_issuer_ref_renders_a_cert_manager_certificate_per_kind_writing_the_mounted_secrets():
    spec = spec_of({"tls": {"issuerRef": {"name": "chain-ca", "kind": "ClusterIssuer"}}})
    objects = by_key(render(spec))
    issued = {name: m for (kind, name), m in objects.items() if kind == "Certificate"}
    assert set(issued) == {f"mychain-tls-{kind}" for kind in KINDS}
    for name, certificate in issued.items():
        jsonschema.validate(certificate, CERTIFICATE_SCHEMA)
        body = certificate["spec"]
        assert body["secretName"] == name
        assert body["issuerRef"] == {"name": "chain-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        assert {"server auth", "client auth"} <= set(body["usages"])
        assert certificate["metadata"]["ownerReferences"][0]["uid"] == spec.uid
    node = issued["mychain-tls-node"]["spec"]
    assert node["uris"] == ["keychain://mychain/node/mychain-node"] and "*.mychain-node.ns1.svc" in node["dnsNames"]
    assert "dnsNames" not in issued["mychain-tls-operator"]["spec"]
    assert node["duration"] == "2160h" and node["renewBefore"] == "720h"  # renewed at two thirds of 90 days


def test_the_certificate_schema_would_catch_a_misspelt_field():
    certificate = by_key(render(spec_of({"tls": {"issuerRef": {"name": "ca"}}})))[("Certificate", "mychain-tls-node")]
    certificate["spec"]["dnsName"] = certificate["spec"].pop("dnsNames")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(certificate, CERTIFICATE_SCHEMA)


# ---------------------------------------------------------------------------- the reconciler, on the emulator


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime.now(datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tls_reconciler(emulator: kmock.KubernetesEmulator, coordinator, tmp_path, clock: Clock) -> Reconciler:
    return Reconciler(KubeApi.for_host(str(emulator.url).rstrip("/")), default_image=IMAGE,
                      coordinators=plaintext_coordinators_at([coordinator.url]),
                      credentials_dir=tmp_path / "credentials", clock=clock, operator_peer=OPERATOR_PEER)  # fmt: skip


def secret(emulator: kmock.KubernetesEmulator, kind: str) -> dict[str, Any]:
    found = live(emulator, SECRETS, f"mychain-tls-{kind}")
    assert found is not None, kind
    return found


async def test_the_operator_issues_the_chains_certificates_into_secrets_owned_by_the_chain(
        emulator, tls_reconciler: Reconciler, tmp_path):
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 3})
    await asyncio.to_thread(tls_reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    ca = certificate_in(secret(emulator, "ca"), "ca.crt")
    for kind in KINDS:
        found = secret(emulator, kind)
        assert found["metadata"]["ownerReferences"][0]["uid"] == live(emulator, CHAINS, CHAIN)["metadata"]["uid"]
        certificate_in(found).verify_directly_issued_by(ca)
        assert identity_of_certificate(certificate_in(found)).kind == kind
    # The operator's own certificate, as files for its admin API client.
    files = tmp_path / "credentials" / NAMESPACE / CHAIN
    assert (files / "tls.crt").read_bytes() == base64.b64decode(secret(emulator, "operator")["data"]["tls.crt"])
    assert (files / "tls.key").stat().st_mode & 0o077 == 0
    assert live(emulator, "networking.k8s.io/v1/networkpolicies", "mychain-node") is not None


async def test_renewal_rewrites_the_due_secrets_in_place_and_rolls_no_pod(emulator, tls_reconciler, clock: Clock):
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 3})
    await asyncio.to_thread(tls_reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    before = {kind: certificate_in(secret(emulator, kind)) for kind in KINDS}
    template = live(emulator, STATEFULSETS, "mychain-node")["spec"]["template"]
    count = len(writes(emulator))

    clock.now += datetime.timedelta(days=30)  # a third of the life: nothing due yet
    await asyncio.to_thread(tls_reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    assert writes(emulator)[count:] == []

    clock.now += datetime.timedelta(days=31)  # past two thirds
    await asyncio.to_thread(tls_reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    renewed = writes(emulator)[count:]
    assert sorted(renewed) == sorted(f"PATCH /api/v1/namespaces/{NAMESPACE}/secrets/mychain-tls-{kind}"
                                     for kind in KINDS), "the CA is kept; only the certificates are patched"
    for kind in KINDS:
        after = certificate_in(secret(emulator, kind))
        assert after.serial_number != before[kind].serial_number
        assert after.not_valid_after_utc > before[kind].not_valid_after_utc
    assert live(emulator, STATEFULSETS, "mychain-node")["spec"]["template"] == template


async def test_an_issuer_ref_makes_certificates_and_the_operator_waits_for_its_secret(emulator, tls_reconciler):
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"tls": {"issuerRef": {"name": "chain-ca"}}})
    await asyncio.to_thread(tls_reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    certificate = live(emulator, "cert-manager.io/v1/certificates", "mychain-tls-node")
    assert certificate["spec"]["issuerRef"]["name"] == "chain-ca"
    assert live(emulator, SECRETS, "mychain-tls-ca") is None, "cert-manager issues: the operator makes no CA"

    # The user points the Chain at another issuer: every Certificate follows.
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"tls": {"issuerRef": {"name": "other-ca"}}})
    await asyncio.to_thread(tls_reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    for kind in KINDS:
        assert live(emulator, "cert-manager.io/v1/certificates", f"mychain-tls-{kind}")["spec"]["issuerRef"]["name"] \
            == "other-ca"


async def test_a_changed_allow_from_patches_the_proxy_network_policy(emulator, tls_reconciler):
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body()
    await asyncio.to_thread(tls_reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    peers = [{"podSelector": {"matchLabels": {"role": "frontend"}}}]
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"proxy": {"allowFrom": peers}})
    await asyncio.to_thread(tls_reconciler.reconcile, live(emulator, CHAINS, CHAIN))
    policy = live(emulator, "networking.k8s.io/v1/networkpolicies", "mychain-proxy")
    assert policy["spec"]["ingress"][0]["from"] == peers


def test_the_charts_operator_names_a_peer_that_selects_its_own_pod():
    objects = render_chart(CHART, release=RELEASE, namespace=RELEASE_NAMESPACE, values={})
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    args = [a.replace("$(POD_NAMESPACE)", RELEASE_NAMESPACE) for a in pod["spec"]["containers"][0]["args"][1:]]
    peer = parse_args(args).operator_peer
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": RELEASE_NAMESPACE}
    assert peer["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize("enabled", [False, True])
def test_the_chart_grants_cert_manager_certificates_only_when_asked(enabled):
    objects = render_chart(CHART, release=RELEASE, namespace=RELEASE_NAMESPACE,
                           values={"certManager": {"enabled": enabled}})
    account = next(o["metadata"] for o in objects if o["kind"] == "ServiceAccount")
    policy = Policy.from_objects(objects, ServiceAccount(account["name"], account["namespace"]))
    request = ApiRequest.parse("POST", f"/apis/cert-manager.io/v1/namespaces/{NAMESPACE}/certificates")
    assert (policy.allowing(request) is not None) is enabled
