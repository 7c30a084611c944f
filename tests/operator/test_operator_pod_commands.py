"""Every container the operator and the Helm chart render starts: its command line, expanded as the kubelet expands it
(env, envFrom the Chain's ConfigMap, the pod name from the downward API), is accepted by the real
argument parser of its component, and names the addresses the cluster's DNS gives its pods."""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from keychain.coordinator.main import parse_args as coordinator_args
from keychain.node.main import parser as node_parser
from keychain.operator.main import parse_args as operator_args
from keychain.operator.naming import COORDINATOR_GRPC_PORT, NODE_GRPC_PORT
from keychain.operator.rendering import CoordinatorShape, render
from keychain.operator.spec import ChainSpec
from keychain.proxy.config import config_from_args

from keychain.testing.helm import render_chart
from keychain.testing.podspec import expand_container

IMAGE = "keychaindb/keychain:0.1.0"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "chain.yaml"
CHART = ROOT / "deploy" / "helm" / "keychain"
TOKEN = "s3cret"


def example_chain() -> dict[str, Any]:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace="default", uid="u-example")
    return body


MINIMAL = {"metadata": {"name": "kv", "namespace": "ns1", "uid": "u-1"}}
FIVE_COORDINATORS = {
    "metadata": {"name": "big", "namespace": "prod", "uid": "u-2"},
    "spec": {"replicas": 5, "coordinator": {"replicas": 5}, "readConsistency": "eventual",
             "auth": {"tokenSecretRef": {"name": "kv-token", "key": "bearer"}}},
}  # fmt: skip
CHAINS = {"example": example_chain(), "minimal": MINIMAL, "five-coordinators": FIVE_COORDINATORS}


def parse(parse_argv: Callable[[list[str]], Any], argv: list[str]) -> Any:
    """Run a component's argument parsing; a usage error fails the test with the parser's message."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            return parse_argv(argv)
        except SystemExit as exc:
            pytest.fail(f"`keychain {' '.join(argv)}` refused its arguments (exit {exc.code}): {stderr.getvalue()}")


def pods_of(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """The pods a StatefulSet or Deployment controller would create (name, namespace, labels)."""
    meta = workload["metadata"]
    name, replicas = meta["name"], workload["spec"]["replicas"]
    names = ([f"{name}-{i}" for i in range(replicas)] if workload["kind"] == "StatefulSet"
             else [f"{name}-7c9f5d8b4-{suffix}" for suffix in ("x2kqz", "b8wnt", "m4pld")[:replicas]])
    template = workload["spec"]["template"]
    return [{"metadata": {"name": n, "namespace": meta["namespace"], "uid": f"uid-{n}",
                          "labels": template["metadata"]["labels"]},
             "spec": template["spec"], "status": {"podIP": "10.0.0.7"}} for n in names]  # fmt: skip


def started(body: dict[str, Any], mounts: dict[str, Path]) -> list[tuple[dict[str, Any], str, list[str], dict]]:
    """(pod, container name, argv, env) of every container of every workload rendered for `body`.

    `mounts` maps a secret volume's mount path to a directory standing in for it."""
    objects = render(ChainSpec.from_resource(body, default_image=IMAGE))
    configmaps = {m["metadata"]["name"]: m["data"] for m in objects if m["kind"] == "ConfigMap"}
    result = []
    for workload in (m for m in objects if m["kind"] in ("StatefulSet", "Deployment")):
        for pod in pods_of(workload):
            for container in pod["spec"]["containers"]:
                argv, env = expand_container(container, configmaps, pod)
                for mount, directory in mounts.items():
                    argv = [a.replace(mount, str(directory)) for a in argv]
                result.append((pod, container["name"], argv, env))
    return result


@pytest.fixture
def secret_mounts(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "token").write_text(TOKEN)
    return {"/etc/keychain/auth": tmp_path}


@pytest.mark.parametrize("body", CHAINS.values(), ids=CHAINS.keys())
def test_every_rendered_container_passes_its_components_argument_parsing(body, secret_mounts):
    containers = started(body, secret_mounts)
    components = {name for _, name, _, _ in containers}
    assert components == {"coordinator", "node", "proxy"}
    for pod, name, argv, env in containers:
        assert argv[0] == "keychain" and argv[1] == name, argv
        assert not any("$(" in a for a in argv), f"an unexpanded reference in {argv}"
        pod_name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        if name == "coordinator":
            args = parse(coordinator_args, argv[2:])
            service = pod_name.rsplit("-", 1)[0]
            assert args.id == pod_name
            assert args.advertise == f"{pod_name}.{service}.{namespace}.svc:{COORDINATOR_GRPC_PORT}"
            assert args.peers[pod_name] == args.advertise
            assert args.chain == [body["metadata"]["name"]]
        elif name == "node":
            args = parse(node_parser().parse_args, argv[2:])
            service = pod_name.rsplit("-", 1)[0]
            assert args.id == pod_name
            assert args.advertise == f"{pod_name}.{service}.{namespace}.svc:{NODE_GRPC_PORT}"
            replicas = body.get("spec", {}).get("coordinator", {}).get("replicas", 3)
            assert len(args.coordinator.split(",")) == replicas
        else:
            config = parse(lambda a, e=env: config_from_args(a, environ=e), argv[2:])
            assert config.chain == body["metadata"]["name"]
            assert config.auth_token == (TOKEN if "auth" in body.get("spec", {}) else None)


@pytest.mark.parametrize("body", CHAINS.values(), ids=CHAINS.keys())
def test_the_coordinators_peers_are_the_addresses_they_advertise(body, secret_mounts):
    coordinators = [parse(coordinator_args, argv[2:]) for _, name, argv, _ in started(body, secret_mounts)
                    if name == "coordinator"]  # fmt: skip
    peers = {tuple(sorted(c.peers.items())) for c in coordinators}
    assert len(peers) == 1, "every initial member must be given the same --peers"
    assert dict(peers.pop()) == {c.id: c.advertise for c in coordinators}


def test_a_coordinator_given_another_members_address_is_still_refused():
    peers = "c-0=c-0.coord.ns.svc:7000,c-1=c-1.coord.ns.svc:7000"
    with contextlib.redirect_stderr(io.StringIO()) as err, pytest.raises(SystemExit):
        coordinator_args(["--id", "c-0", "--listen", "0.0.0.0:7000", "--advertise", "c-1.coord.ns.svc:7000",
                          "--data-dir", "/d", "--peers", peers])  # fmt: skip
    assert "--peers gives c-0 the address c-0.coord.ns.svc:7000, but --advertise is c-1" in err.getvalue()


def test_a_wildcard_listener_without_advertise_takes_its_peers_entry():
    peers = "c-0=c-0.coord.ns.svc:7000,c-1=c-1.coord.ns.svc:7000"
    args = coordinator_args(["--id", "c-0", "--listen", "0.0.0.0:7000", "--data-dir", "/d", "--peers", peers])
    assert args.advertise == "c-0.coord.ns.svc:7000"
    with contextlib.redirect_stderr(io.StringIO()) as err, pytest.raises(SystemExit):
        coordinator_args(["--id", "c-0", "--listen", "127.0.0.1:7000", "--data-dir", "/d", "--peers", peers])
    assert "but --listen is 127.0.0.1:7000" in err.getvalue()


def test_coordinators_added_by_a_resize_join_the_initial_members_cluster(secret_mounts):
    body = {"metadata": {"name": "kv", "namespace": "ns1", "uid": "u-1"}, "spec": {"coordinator": {"replicas": 5}}}
    objects = render(ChainSpec.from_resource(body, default_image=IMAGE), None, CoordinatorShape(5, 3))
    configmaps = {m["metadata"]["name"]: m["data"] for m in objects if m["kind"] == "ConfigMap"}
    workload = next(m for m in objects if m["metadata"]["name"] == "kv-coord" and m["kind"] == "StatefulSet")
    parsed = {}
    for pod in pods_of(workload):
        argv, _ = expand_container(pod["spec"]["containers"][0], configmaps, pod)
        parsed[pod["metadata"]["name"]] = parse(coordinator_args, argv[2:])
    initial = [f"kv-coord-{i}.kv-coord.ns1.svc:7000" for i in range(3)]
    for i in range(3):
        assert parsed[f"kv-coord-{i}"].peers is not None and not parsed[f"kv-coord-{i}"].join
    for i in (3, 4):
        args = parsed[f"kv-coord-{i}"]
        assert args.peers is None and args.join == initial
        assert args.advertise == f"kv-coord-{i}.kv-coord.ns1.svc:7000"


@pytest.mark.parametrize("namespaces", [[], ["team-a", "team-b"]], ids=["cluster-wide", "listed-namespaces"])
def test_the_charts_operator_container_passes_the_operators_argument_parsing(namespaces):
    values = {"operator": {"watchNamespaces": namespaces, "verbose": True, "interval": 7},
              "metrics": {"scrapeAnnotations": bool(namespaces)}}  # fmt: skip
    objects = render_chart(CHART, release="kc", namespace="keychain-system", values=values)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = {**pods_of(deployment)[0], "spec": deployment["spec"]["template"]["spec"]}
    (container,) = pod["spec"]["containers"]
    argv, _ = expand_container(container, {}, pod)
    assert argv[:2] == ["keychain", "operator"]
    args = parse(operator_args, argv[2:])
    assert args.namespace == namespaces and args.interval == 7 and args.verbose
    assert args.scrape_annotations == bool(namespaces)
    assert args.default_image == container["image"]
    assert args.health_port == container["ports"][0]["containerPort"]


def test_argument_errors_surface_as_usage_errors_not_crashes():
    # The parser functions above raise SystemExit on bad input; parse() turns that into a test failure.
    with pytest.raises(pytest.fail.Exception, match="refused its arguments"):
        parse(argparse.ArgumentParser().parse_args, ["--nope"])
