"""Pure rendering: every object for a minimal and a fully specified Chain, validated strictly."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
from keychain.operator.rendering import CoordinatorShape, NodeSetShape, render
from keychain.operator.spec import ChainSpec, ChainSpecError

# A recent Kubernetes release the manifests must be valid for (strict: unknown fields fail).
KUBERNETES_VERSION = "1.35"
# README: Kubernetes 1.29 or newer; the newest is the newest the validator knows.
SUPPORTED_KUBERNETES = ("1.29", kubernetes_validate.latest_version())
IMAGE = "keychaindb/keychain:0.1.0"

MINIMAL = {"metadata": {"name": "mychain", "namespace": "ns1", "uid": "u-1"}}
FULL = {
    "metadata": {"name": "mychain", "namespace": "ns1", "uid": "u-1", "generation": 4},
    "spec": {
        "replicas": 5,
        "image": "keychaindb/keychain:0.2.0",
        "imagePullPolicy": "Always",
        "storage": {"size": "20Gi", "storageClassName": "fast", "deleteOnChainDeletion": True},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]
                }
            }
        },
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kv", "effect": "NoSchedule"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "mychain"}},
            }
        ],
        "coordinator": {
            "replicas": 5,
            "resources": {"requests": {"cpu": "100m"}},
            "storage": {"size": "2Gi", "storageClassName": "fast"},
        },
        "proxy": {
            "replicas": 3,
            "resources": {"limits": {"memory": "256Mi"}},
            "serviceType": "LoadBalancer",
            "ingress": {"enabled": True, "host": "kv.example.test", "className": "nginx", "tlsSecretName": "kv-tls"},
            "allowFrom": [{"namespaceSelector": {"matchLabels": {"team": "web"}},
                           "podSelector": {"matchLabels": {"role": "frontend"}}},
                          {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
        },
        "readConsistency": "eventual",
        "auth": {"tokenSecretRef": {"name": "kv-token", "key": "bearer"}},
        "pdb": {"enabled": True},
    },
}


def rendered(body: dict[str, Any], shape: NodeSetShape | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    spec = ChainSpec.from_resource(body, default_image=IMAGE)
    return {(m["kind"], m["metadata"]["name"]): m for m in render(spec, shape)}


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
@pytest.mark.parametrize("body", [MINIMAL, FULL], ids=["minimal", "full"])
def test_every_rendered_object_is_valid_kubernetes_in_strict_mode(body, version):
    objects = rendered(body)
    for key, manifest in objects.items():
        kubernetes_validate.validate(manifest, version, strict=True)
        assert manifest["metadata"]["ownerReferences"][0]["uid"] == "u-1", key
        assert manifest["metadata"]["labels"]["app.kubernetes.io/instance"] == "mychain", key


def test_strict_validation_would_catch_a_misspelt_field():
    manifest = copy.deepcopy(rendered(MINIMAL)[("StatefulSet", "mychain-node")])
    manifest["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_a_minimal_chain_renders_the_core_objects_and_budgets_but_no_ingress():
    assert set(rendered(MINIMAL)) == {
        ("ConfigMap", "mychain-config"),
        ("Service", "mychain-coord"),
        ("StatefulSet", "mychain-coord"),
        ("Service", "mychain-node"),
        ("StatefulSet", "mychain-node"),
        ("Service", "mychain-proxy"),
        ("Deployment", "mychain-proxy"),
        ("PodDisruptionBudget", "mychain-coord"),
        ("PodDisruptionBudget", "mychain-node"),
        ("PodDisruptionBudget", "mychain-proxy"),
        ("NetworkPolicy", "mychain-coord"),
        ("NetworkPolicy", "mychain-node"),
        ("NetworkPolicy", "mychain-proxy"),
    }


def test_single_replica_components_get_no_disruption_budget():
    body = {**MINIMAL, "spec": {"replicas": 1, "coordinator": {"replicas": 1}, "proxy": {"replicas": 1}}}
    assert not [key for key in rendered(body) if key[0] == "PodDisruptionBudget"]
    budgets = [m for (kind, _), m in rendered(FULL).items() if kind == "PodDisruptionBudget"]
    assert [b["spec"]["unhealthyPodEvictionPolicy"] for b in budgets] == ["AlwaysAllow"] * 3


def test_the_node_statefulset_carries_the_stepped_replicas_partition_and_volumes():
    sts = rendered(FULL, NodeSetShape(replicas=4, partition=2))[("StatefulSet", "mychain-node")]
    assert sts["spec"]["replicas"] == 4
    assert sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 2
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "20Gi" and claim["storageClassName"] == "fast"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Retain"}
    minimal = rendered(MINIMAL)[("StatefulSet", "mychain-node")]
    assert minimal["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


def test_containers_run_the_keychain_entrypoint_with_the_contract_flags():
    objects = rendered(FULL)
    node = objects[("StatefulSet", "mychain-node")]["spec"]["template"]["spec"]["containers"][0]
    assert node["command"] == ["keychain"]
    assert node["args"] == [
        "node", "--id", "$(POD_NAME)", "--listen", "0.0.0.0:7100",
        "--advertise", "$(POD_NAME).mychain-node.ns1.svc:7100", "--data-dir", "/data",
        "--chain", "$(KEYCHAIN_CHAIN)", "--coordinator", "$(KEYCHAIN_COORDINATORS)",
        "--metrics-listen", "0.0.0.0:9100",
        "--tls-cert", "/var/run/secrets/keychain.dev/tls/tls.crt", "--tls-key", "/var/run/secrets/keychain.dev/tls/tls.key",
        "--tls-ca", "/var/run/secrets/keychain.dev/tls/ca.crt",
    ]  # fmt: skip
    assert node["readinessProbe"]["tcpSocket"]["port"] == 7100
    coordinator = objects[("StatefulSet", "mychain-coord")]["spec"]["template"]["spec"]["containers"][0]
    assert coordinator["args"][:2] == ["coordinator", "--id"]
    assert "--peers" in coordinator["args"] and coordinator["livenessProbe"]["httpGet"]["path"] == "/healthz"
    proxy = objects[("Deployment", "mychain-proxy")]["spec"]["template"]["spec"]["containers"][0]
    token = proxy["args"].index("--auth-token-file")
    assert proxy["args"][token + 1] == "/etc/keychain/auth/token"
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = objects[("ConfigMap", "mychain-config")]["data"]
    assert config["KEYCHAIN_COORDINATOR_PEERS"].split(",")[0] == (
        "mychain-coord-0=mychain-coord-0.mychain-coord.ns1.svc:7000"
    )
    assert len(config["KEYCHAIN_COORDINATORS"].split(",")) == 5
    assert config["KEYCHAIN_READ_CONSISTENCY"] == "eventual"


def test_nodes_serve_metrics_on_a_named_port_and_are_annotated_for_scraping_only_when_asked():
    spec = ChainSpec.from_resource(MINIMAL, default_image=IMAGE)
    plain = {(m["kind"], m["metadata"]["name"]): m for m in render(spec)}[("StatefulSet", "mychain-node")]
    template = plain["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container["ports"]
    metrics = container["args"].index("--metrics-listen")
    assert container["args"][metrics + 1] == "0.0.0.0:9100"
    assert not any(k.startswith("prometheus.io/") for k in template["metadata"]["annotations"])
    scraped = {(m["kind"], m["metadata"]["name"]): m for m in render(spec, scrape_annotations=True)}
    annotations = scraped[("StatefulSet", "mychain-node")]["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9100", "prometheus.io/path": "/metrics",
    }  # fmt: skip
    ports = scraped[("Service", "mychain-node")]["spec"]["ports"]
    assert {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"} in ports


def test_a_resized_coordinator_keeps_its_initial_members_in_the_config_so_nothing_rolls():
    spec = ChainSpec.from_resource({**MINIMAL, "spec": {"coordinator": {"replicas": 5}}}, default_image=IMAGE)
    grown = {(m["kind"], m["metadata"]["name"]): m for m in render(spec, None, CoordinatorShape(4, 3))}
    initial = {(m["kind"], m["metadata"]["name"]): m for m in render(spec, None, CoordinatorShape(3, 3))}
    assert grown[("StatefulSet", "mychain-coord")]["spec"]["replicas"] == 4
    assert grown[("ConfigMap", "mychain-config")] == initial[("ConfigMap", "mychain-config")]
    assert grown[("ConfigMap", "mychain-config")]["data"]["KEYCHAIN_COORDINATOR_PEERS"].count("=") == 3
    for kind, name in (("StatefulSet", "mychain-node"), ("Deployment", "mychain-proxy")):
        assert grown[(kind, name)]["spec"]["template"] == initial[(kind, name)]["spec"]["template"]


def test_every_pod_runs_non_root_with_a_read_only_root_filesystem():
    for (kind, name), manifest in rendered(FULL).items():
        if kind not in ("StatefulSet", "Deployment"):
            continue
        pod = manifest["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, name


def test_a_config_change_changes_every_pod_template():
    before = rendered(MINIMAL)
    after = rendered({**MINIMAL, "spec": {"readConsistency": "eventual"}})
    for key in [("StatefulSet", "mychain-node"), ("StatefulSet", "mychain-coord"), ("Deployment", "mychain-proxy")]:
        hashes = [objs[key]["spec"]["template"]["metadata"]["annotations"] for objs in (before, after)]
        assert hashes[0] != hashes[1], key


def test_the_ingress_routes_the_host_to_the_proxy_with_tls():
    ingress = rendered(FULL)[("Ingress", "mychain")]["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"hosts": ["kv.example.test"], "secretName": "kv-tls"}]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "mychain-proxy", "port": {"name": "http"}}


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"replicas": 0}, "spec.replicas: must be at least 1"),
        ({"replicas": "3"}, "spec.replicas: expected an integer"),
        ({"coordinator": {"replicas": 2}}, "spec.coordinator.replicas: must be 1, 3 or 5"),
        ({"storage": {"size": "lots"}}, "spec.storage.size: not a positive quantity"),
        ({"readConsistency": "sometimes"}, "spec.readConsistency: must be one of strong, eventual"),
        ({"proxy": {"serviceType": "Ingress"}}, "spec.proxy.serviceType: must be one of"),
        ({"proxy": {"ingress": {"tlsSecretName": "t"}}}, "spec.proxy.ingress.host: required"),
        ({"auth": {"tokenSecretRef": {}}}, "spec.auth.tokenSecretRef.name: required"),
        ({"tolerations": "all"}, "spec.tolerations: expected a list of objects"),
    ],
)
def test_a_bad_spec_is_refused_with_the_field_named(spec, message):
    with pytest.raises(ChainSpecError, match=message.replace(".", r"\.")):
        ChainSpec.from_resource({**MINIMAL, "spec": spec}, default_image=IMAGE)


def test_a_chain_name_too_long_for_its_pod_names_is_refused():
    body = {"metadata": {**MINIMAL["metadata"], "name": "c" * 41}}
    with pytest.raises(ChainSpecError, match="at most 40 characters"):
        ChainSpec.from_resource(body, default_image=IMAGE)


def test_without_spec_image_the_operator_default_is_used_and_without_either_it_is_an_error():
    assert ChainSpec.from_resource(MINIMAL, default_image=IMAGE).image == IMAGE
    with pytest.raises(ChainSpecError, match=r"spec\.image: required"):
        ChainSpec.from_resource(MINIMAL, default_image="")
