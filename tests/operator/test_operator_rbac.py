"""RBAC checked offline: requests become the authorizer's attributes, and the chart's rules allow exactly
what the operator does. Every operator test's requests are also checked when it ends (conftest)."""

from __future__ import annotations

import pytest
from conftest import (
    CHAIN,
    CHAINS,
    NAMESPACE,
    api_requests,
    chain_body,
    chart_policy,
    eventually,
    live,
    running_operator,
)

from keychain.testing.rbac import ApiRequest, Policy, ServiceAccount

SA = ServiceAccount("op", "ops")


@pytest.mark.parametrize(
    "method, path, query, expected",
    [
        ("GET", "/api/v1/namespaces/ns1/pods/p-0", "", ("get", "", "pods", "", "ns1")),
        ("GET", "/api/v1/namespaces/ns1/pods", "", ("list", "", "pods", "", "ns1")),
        ("GET", "/api/v1/pods", "labelSelector=a%3Db", ("list", "", "pods", "", "")),
        ("GET", "/apis/keychain.dev/v1alpha1/chains", "watch=true&resourceVersion=5",
         ("watch", "keychain.dev", "chains", "", "")),
        ("GET", "/apis/apps/v1/watch/namespaces/ns1/statefulsets", "", ("watch", "apps", "statefulsets", "", "ns1")),
        ("POST", "/api/v1/namespaces/ns1/events", "", ("create", "", "events", "", "ns1")),
        ("PUT", "/apis/apps/v1/namespaces/ns1/deployments/d", "", ("update", "apps", "deployments", "", "ns1")),
        ("PATCH", "/apis/keychain.dev/v1alpha1/namespaces/ns1/chains/c/status", "",
         ("patch", "keychain.dev", "chains", "status", "ns1")),
        ("DELETE", "/apis/policy/v1/namespaces/ns1/poddisruptionbudgets/b", "",
         ("delete", "policy", "poddisruptionbudgets", "", "ns1")),
        ("DELETE", "/api/v1/namespaces/ns1/configmaps", "", ("deletecollection", "", "configmaps", "", "ns1")),
        ("GET", "/api/v1/namespaces/ns1", "", ("get", "", "namespaces", "", "ns1")),
        ("GET", "/api/v1/namespaces", "watch=1", ("watch", "", "namespaces", "", "")),
    ],
)  # fmt: skip
def test_a_request_becomes_the_authorizers_verb_group_resource_and_namespace(method, path, query, expected):
    assert ApiRequest.parse(method, path, query).kind == expected


def test_discovery_paths_are_non_resource_requests_every_account_may_get():
    policy = Policy.from_objects([], SA)
    for path in ("/api", "/api/v1", "/apis", "/apis/keychain.dev/v1alpha1"):
        request = ApiRequest.parse("GET", path)
        assert not request.is_resource and policy.allowing(request) is not None, path
    assert policy.allowing(ApiRequest.parse("GET", "/metrics")) is None


def role(kind, name, rules, namespace=None):
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "rules": rules}


def binding(kind, role_kind, role_name, namespace=None, subject=SA):
    meta = {"name": f"b-{role_name}", **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "roleRef": {"kind": role_kind, "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": subject.name, "namespace": subject.namespace}]}  # fmt: skip


def test_a_role_binding_grants_only_in_its_namespace_and_a_cluster_role_binding_everywhere():
    pods = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    objects = [
        role("ClusterRole", "reader", pods),
        binding("RoleBinding", "ClusterRole", "reader", namespace="team-a"),
        role("ClusterRole", "events", [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]),
        binding("ClusterRoleBinding", "ClusterRole", "events"),
    ]
    policy = Policy.from_objects(objects, SA)
    assert policy.allowing(ApiRequest.parse("GET", "/api/v1/namespaces/team-a/pods"))
    assert not policy.allowing(ApiRequest.parse("GET", "/api/v1/namespaces/team-b/pods"))
    assert not policy.allowing(ApiRequest.parse("GET", "/api/v1/pods")), "a RoleBinding never grants cluster-wide"
    assert policy.allowing(ApiRequest.parse("POST", "/api/v1/namespaces/team-b/events"))


def test_bindings_of_another_subject_grant_nothing():
    rules = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    objects = [role("ClusterRole", "admin", rules),
               binding("ClusterRoleBinding", "ClusterRole", "admin", subject=ServiceAccount("op", "elsewhere"))]
    assert not Policy.from_objects(objects, SA).allowing(ApiRequest.parse("GET", "/api/v1/pods"))


def test_subresources_need_their_own_rule_and_resource_names_limit_to_named_objects():
    rules = [
        {"apiGroups": ["keychain.dev"], "resources": ["chains"], "verbs": ["patch"]},
        {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"], "resourceNames": ["mine"]},
    ]
    policy = Policy.from_objects([role("Role", "r", rules, "ns1"), binding("RoleBinding", "Role", "r", "ns1")], SA)
    allowed = lambda method, path: policy.allowing(ApiRequest.parse(method, path)) is not None  # noqa: E731
    assert allowed("PATCH", "/apis/keychain.dev/v1alpha1/namespaces/ns1/chains/c")
    assert not allowed("PATCH", "/apis/keychain.dev/v1alpha1/namespaces/ns1/chains/c/status")
    assert allowed("PATCH", "/apis/apps/v1/namespaces/ns1/statefulsets/s/scale")
    assert allowed("GET", "/api/v1/namespaces/ns1/configmaps/mine")
    assert not allowed("GET", "/api/v1/namespaces/ns1/configmaps/other")
    assert not allowed("GET", "/api/v1/namespaces/ns1/configmaps"), "resourceNames never allow a list"


def test_the_report_names_denied_requests_and_grants_no_request_used():
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "delete"]}]
    policy = Policy.from_objects([role("ClusterRole", "c", rules), binding("ClusterRoleBinding", "ClusterRole", "c")],
                                 SA)  # fmt: skip
    report = policy.check([ApiRequest.parse("GET", "/api/v1/namespaces/a/configmaps/x"),
                           ApiRequest.parse("POST", "/api/v1/namespaces/a/configmaps"),
                           ApiRequest.parse("PATCH", "/api/v1/namespaces/a/configmaps/x")])  # fmt: skip
    assert [str(r) for r in report.denied] == ["patch core/configmaps in a"]
    assert [(g.resource, g.verb) for g in report.unused] == [("configmaps", "delete")]
    assert set(report.allowed) == {("get", "", "configmaps", "", "a"), ("create", "", "configmaps", "", "a")}


def test_the_charts_rules_refuse_what_the_operator_never_needs():
    policy = chart_policy(())
    # Secrets are read one by one by name (the Chains' certificates), never listed, watched or deleted.
    for method, path in [
        ("GET", "/api/v1/namespaces/ns1/secrets"),
        ("GET", "/api/v1/secrets"),
        ("DELETE", "/api/v1/namespaces/ns1/secrets/kv-token"),
        ("DELETE", "/apis/apps/v1/namespaces/ns1/statefulsets/mychain-node"),
        ("POST", "/api/v1/namespaces/ns1/persistentvolumeclaims"),
        ("PATCH", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/chains.keychain.dev"),
        ("GET", "/api/v1/namespaces/ns1/pods"),
    ]:
        assert policy.allowing(ApiRequest.parse(method, path)) is None, (method, path)


async def test_an_operator_watching_listed_namespaces_needs_only_the_charts_roles_there(
    emulator, reconciler, namespaces_resource
):
    emulator.objects[CHAINS, NAMESPACE, CHAIN] = chain_body({"replicas": 3})
    async with running_operator(emulator, reconciler, namespaces=(NAMESPACE,)):
        await eventually(lambda: (live(emulator, CHAINS, CHAIN) or {}).get("status", {}).get("phase"))
    requests = api_requests(emulator)
    assert any(r.resource == "chains" and r.verb == "watch" and r.namespace == NAMESPACE for r in requests)
    assert chart_policy((NAMESPACE,)).check(requests).denied == []
    assert any(r.resource == "namespaces" and r.verb in ("list", "watch") for r in requests), "kopf follows them"
    # A chart that lists another namespace gives no Role here.
    denied = chart_policy(("team-b",)).check(requests).denied
    assert any(r.resource == "chains" and r.namespace == NAMESPACE for r in denied)
