"""`keychain operator`: run the Kubernetes operator that turns Chains into clusters.

In a pod it authenticates with its service account; elsewhere with the current kubeconfig
context. It runs as one replica (standalone, no peering) and serves a liveness endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from typing import Any

import kopf
from keychain.operator.coordinator_client import CoordinatorClient
from keychain.operator.handlers import HandlerSettings, build_registry
from keychain.operator.kube import KubeApi
from keychain.operator.reconcile import CoordinatorFactory, Reconciler, in_cluster_coordinators
from keychain.operator.spec import ChainSpec

from keychain.tls_files import TlsFiles

DEFAULT_IMAGE_ENV = "KEYCHAIN_IMAGE"
OPERATOR_NAMESPACE_ENV = "KEYCHAIN_OPERATOR_NAMESPACE"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="keychain operator", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--namespace", "-n", action="append", default=[],
        help="watch Chains in this namespace (repeatable); default: all namespaces",
    )  # fmt: skip
    parser.add_argument(
        "--default-image", default=os.environ.get(DEFAULT_IMAGE_ENV, ""),
        help=f"image for Chains that set no spec.image (default: ${DEFAULT_IMAGE_ENV})",
    )  # fmt: skip
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between reconciles of each Chain")
    parser.add_argument("--retry-delay", type=float, default=5.0, help="seconds before a failed reconcile retries")
    parser.add_argument(
        "--coordinator-url", action="append", default=[],
        help="reach every Chain's coordinator admin API here (e.g. through a port-forward) "
        "instead of through the cluster's DNS; repeatable",
    )  # fmt: skip
    parser.add_argument("--health-port", type=int, default=8080, help="port of the /healthz endpoint")
    parser.add_argument(
        "--scrape-annotations", action="store_true",
        help="annotate chain node pods for Prometheus' annotation-based discovery (prometheus.io/scrape, port, path)",
    )  # fmt: skip
    parser.add_argument(
        "--operator-namespace", default=os.environ.get(OPERATOR_NAMESPACE_ENV, ""),
        help="the operator pod's namespace: with --operator-label, the Chains' NetworkPolicies let it in "
        f"(default: ${OPERATOR_NAMESPACE_ENV})",
    )  # fmt: skip
    parser.add_argument(
        "--operator-label", action="append", default=[], metavar="KEY=VALUE",
        help="a label of the operator's pod (repeatable): the Chains' NetworkPolicies let pods with them in",
    )  # fmt: skip
    parser.add_argument("--verbose", "-v", action="store_true", help="log every step, not only problems")
    args = parser.parse_args(list(argv))
    if args.interval <= 0 or args.retry_delay <= 0:
        parser.error("--interval and --retry-delay must be positive")
    try:
        args.operator_peer = operator_peer(args.operator_namespace, args.operator_label)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def operator_peer(namespace: str, label_args: Sequence[str]) -> dict[str, Any] | None:
    """The NetworkPolicy peer that selects the operator's pod, None unless both its namespace and labels are known."""
    if not label_args:
        return None
    pairs = [arg.partition("=") for arg in label_args]
    if any(not key or not sep for key, sep, _ in pairs):
        raise ValueError(f"--operator-label: KEY=VALUE expected, got {label_args}")
    if not namespace:
        raise ValueError("--operator-label needs --operator-namespace")
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "podSelector": {"matchLabels": {key: value for key, _, value in pairs}}}  # fmt: skip


def coordinators_at(urls: Sequence[str]) -> CoordinatorFactory:
    """Every Chain's coordinator admin API at `urls` (with the operator's certificate for the Chain, if TLS)."""
    def factory(_: ChainSpec, tls_files: TlsFiles | None) -> CoordinatorClient:
        return CoordinatorClient(urls, tls_files=tls_files)

    return factory


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    kopf.configure(verbose=args.verbose, quiet=not args.verbose, log_format=kopf.LogFormat.JSON)
    reconciler = Reconciler(
        KubeApi.from_environment(),
        default_image=args.default_image,
        coordinators=coordinators_at(args.coordinator_url) if args.coordinator_url else in_cluster_coordinators,
        scrape_annotations=args.scrape_annotations,
        operator_peer=args.operator_peer,
    )
    registry = build_registry(HandlerSettings(interval=args.interval, retry_delay=args.retry_delay))
    # A registry of our own starts without kopf's default login handlers: without this one the
    # operator finds no credentials at all, in a pod or anywhere else.

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In a pod, the service account (token, CA, API Service); elsewhere the kubeconfig."""
        return kopf.login_via_client(**kwargs)

    asyncio.run(
        kopf.operator(
            registry=registry,
            memo=kopf.Memo(reconciler=reconciler),
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
        )
    )
    return 0
