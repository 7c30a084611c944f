"""Kubernetes RBAC, checked offline: which recorded API requests the given roles allow.

    policy = Policy.from_objects(rendered_chart, ServiceAccount("keychain", "keychain-system"))
    report = policy.check(ApiRequest.parse(method, path, query) for method, path, query in recorded)
    report.denied        # requests no rule bound to the subject allows
    report.unused        # grants (role, group, resource, verb) no request needed
    report.allowed       # each request kind and the grant that allowed it

The request attributes follow the API server's request info: an HTTP method and URL become a verb
(GET of one object `get`, GET of a collection `list`, `?watch=true` or a /watch/ path `watch`,
POST `create`, PUT `update`, PATCH `patch`, DELETE `delete` or `deletecollection`), an API group,
a resource, a subresource, a namespace and a name. Rules are matched as the RBAC authorizer does:
ClusterRoleBindings grant their ClusterRole everywhere; RoleBindings grant their Role or
ClusterRole only in their own namespace; `*` matches any group, resource or verb; `*/sub` any
resource's subresource; `resourceNames` only requests that name one of them. Non-resource URLs
(discovery: /api, /apis, /version, ...) are allowed by Kubernetes' default `system:discovery` role
to every authenticated user, and are checked against that role.

Pure: no I/O. Written by hand because no library evaluates RBAC rules outside an API server.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

# What system:discovery and system:public-info-viewer allow every authenticated user.
DEFAULT_NON_RESOURCE_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz",
                             "/version", "/version/", "/openapi", "/openapi/*")  # fmt: skip
DEFAULT_NON_RESOURCE_ROLE = "system:discovery"


@dataclass(frozen=True)
class ApiRequest:
    """What the authorizer sees of one request: a resource request, or a non-resource URL."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # set for non-resource requests only

    @property
    def is_resource(self) -> bool:
        return not self.path

    @property
    def kind(self) -> tuple[str, str, str, str, str]:
        """(verb, group, resource, subresource, namespace): the request without the object's name."""
        return (self.verb, self.group, self.resource, self.subresource, self.namespace)

    def __str__(self) -> str:
        if not self.is_resource:
            return f"{self.verb} {self.path}"
        what = self.resource + (f"/{self.subresource}" if self.subresource else "")
        where = f" in {self.namespace}" if self.namespace else " (cluster)"
        return f"{self.verb} {self.group or 'core'}/{what}{where}"

    @classmethod
    def parse(cls, method: str, path: str, query: str | Mapping[str, Any] = "") -> ApiRequest:
        """The request info the API server derives from an HTTP method, URL path and query."""
        params = _params(query)
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
        else:
            rest = None
        if not rest:  # /api, /api/v1, /apis/g/v: discovery documents, not resources
            return cls(verb=_non_resource_verb(method), path="/" + "/".join(parts))
        watch_path = rest[0] == "watch"
        if watch_path:
            rest = rest[1:]
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        elif rest[0] == "namespaces" and len(rest) == 2:
            # /namespaces/{name}: the Namespace object itself; its namespace is its name.
            namespace = rest[1]
        resource = rest[0]
        name = rest[1] if len(rest) >= 2 else ""
        subresource = "/".join(rest[2:])
        verb = _resource_verb(method, bool(name), watch_path or _truthy(params.get("watch")))
        return cls(verb=verb, group=group, resource=resource, subresource=subresource, namespace=namespace,
                   name=name)  # fmt: skip


def _params(query: str | Mapping[str, Any]) -> dict[str, str]:
    if isinstance(query, Mapping):
        return {k: str(v) for k, v in query.items()}
    return {k: v[-1] for k, v in parse_qs(query.lstrip("?"), keep_blank_values=True).items()}


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1", "")


def _non_resource_verb(method: str) -> str:
    return {"GET": "get", "HEAD": "head", "POST": "post", "PUT": "put", "PATCH": "patch",
            "DELETE": "delete", "OPTIONS": "options"}.get(method.upper(), method.lower())  # fmt: skip


def _resource_verb(method: str, named: bool, watch: bool) -> str:
    method = method.upper()
    if method in ("GET", "HEAD"):
        if watch:
            return "watch"
        return "get" if named else "list"
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
    if method not in verbs:
        raise ValueError(f"no Kubernetes verb for HTTP {method}")
    return verbs[method]


@dataclass(frozen=True)
class Rule:
    """One PolicyRule of a role."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, rule: Mapping[str, Any]) -> Rule:
        return cls(verbs=tuple(rule.get("verbs") or ()), api_groups=tuple(rule.get("apiGroups") or ()),
                   resources=tuple(rule.get("resources") or ()), resource_names=tuple(rule.get("resourceNames") or ()),
                   non_resource_urls=tuple(rule.get("nonResourceURLs") or ()))  # fmt: skip

    def grants(self) -> list[tuple[str, str, str]]:
        """(group, resource, verb) of every combination this rule lists ("" group: core)."""
        if self.non_resource_urls:
            return [("", url, verb) for url in self.non_resource_urls for verb in self.verbs]
        return [(g, r, v) for g in self.api_groups for r in self.resources for v in self.verbs]

    def allows(self, request: ApiRequest) -> tuple[str, str, str] | None:
        """The grant of this rule that allows `request`, or None."""
        if not request.is_resource:
            if not self.non_resource_urls:
                return None
            for url in self.non_resource_urls:
                if _url_matches(url, request.path):
                    for verb in self.verbs:
                        if verb in ("*", request.verb):
                            return ("", url, verb)
            return None
        if self.non_resource_urls:
            return None
        group = next((g for g in self.api_groups if g in ("*", request.group)), None)
        resource = next((r for r in self.resources if _resource_matches(r, request)), None)
        verb = next((v for v in self.verbs if v in ("*", request.verb)), None)
        if group is None or resource is None or verb is None:
            return None
        if self.resource_names and request.name not in self.resource_names:
            return None
        return (group, resource, verb)


def _resource_matches(rule_resource: str, request: ApiRequest) -> bool:
    if rule_resource == "*":
        return True
    if not request.subresource:
        return rule_resource == request.resource
    return rule_resource in (f"{request.resource}/{request.subresource}", f"*/{request.subresource}")


def _url_matches(rule_url: str, path: str) -> bool:
    if rule_url == "*":
        return True
    if rule_url.endswith("*"):
        return path.startswith(rule_url[:-1])
    return fnmatch.fnmatchcase(path, rule_url) if "?" in rule_url else path == rule_url


@dataclass(frozen=True)
class Role:
    """A Role (namespace set) or ClusterRole (namespace empty) and its rules."""

    kind: str
    name: str
    namespace: str
    rules: tuple[Rule, ...]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True)
class ServiceAccount:
    name: str
    namespace: str


@dataclass(frozen=True)
class Grant:
    """One (group, resource, verb) a role's rule gives, where a binding gives it to the subject."""

    role: str  # e.g. "ClusterRole keychain-cluster"
    scope: str  # "" cluster-wide, else the one namespace a RoleBinding gives it in
    group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        where = f" in {self.scope}" if self.scope else ""
        if self.resource.startswith("/"):  # a non-resource URL
            return f"{self.role}: {self.verb} {self.resource}"
        return f"{self.role}: {self.verb} {self.group or 'core'}/{self.resource}{where}"


@dataclass
class Report:
    allowed: dict[tuple[str, str, str, str, str], Grant] = field(default_factory=dict)
    denied: list[ApiRequest] = field(default_factory=list)
    unused: list[Grant] = field(default_factory=list)

    def allowed_lines(self) -> list[str]:
        """Each request kind (verb group/resource[/subresource] namespace) and the grant that allowed it."""
        lines = []
        for (verb, group, resource, sub, namespace), grant in self.allowed.items():
            if group.startswith("/"):  # a non-resource URL: (verb, path, "", "", "")
                what = f"{verb} {group}"
            else:
                what = f"{verb} {group or 'core'}/{resource}{'/' + sub if sub else ''} {namespace or '(cluster)'}"
            lines.append(f"{what}  <-  {grant}")
        return sorted(lines)


@dataclass(frozen=True)
class Policy:
    """The rules bound to one subject: (role, the namespace a RoleBinding limits it to, or "")."""

    bound: tuple[tuple[Role, str], ...]

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]], subject: ServiceAccount,
                     *, default_discovery: bool = True) -> Policy:  # fmt: skip
        """The subject's roles among rendered objects (Roles, ClusterRoles and their bindings)."""
        objects = list(objects)
        roles: dict[tuple[str, str, str], Role] = {}
        for o in objects:
            if o.get("kind") in ("Role", "ClusterRole"):
                meta = o["metadata"]
                namespace = meta.get("namespace", "") if o["kind"] == "Role" else ""
                rules = tuple(Rule.from_dict(r) for r in o.get("rules") or ())
                roles[(o["kind"], namespace, meta["name"])] = Role(o["kind"], meta["name"], namespace, rules)
        bound: list[tuple[Role, str]] = []
        for o in objects:
            if o.get("kind") not in ("RoleBinding", "ClusterRoleBinding") or not _names(o, subject):
                continue
            scope = o["metadata"].get("namespace", "") if o["kind"] == "RoleBinding" else ""
            ref = o["roleRef"]
            key = (ref["kind"], scope if ref["kind"] == "Role" else "", ref["name"])
            if key not in roles:
                raise ValueError(f"{o['kind']} {o['metadata']['name']} refers to a missing {ref['kind']} {ref['name']}")
            bound.append((roles[key], scope))
        if default_discovery:
            discovery = Role("ClusterRole", DEFAULT_NON_RESOURCE_ROLE, "",
                             (Rule(verbs=("get",), non_resource_urls=DEFAULT_NON_RESOURCE_URLS),))  # fmt: skip
            bound.append((discovery, ""))
        return cls(tuple(bound))

    def allowing(self, request: ApiRequest) -> Grant | None:
        """The first grant bound to the subject that allows `request`, or None."""
        for role, scope in self.bound:
            if scope and request.namespace != scope:
                continue  # a RoleBinding gives nothing outside its namespace, nor cluster-wide
            for rule in role.rules:
                grant = rule.allows(request)
                if grant:
                    return Grant(role.label, scope, *grant)
        return None

    def grants(self) -> list[Grant]:
        """Every grant the subject has, except the defaults every authenticated user has."""
        return [Grant(role.label, scope, *g) for role, scope in self.bound if role.name != DEFAULT_NON_RESOURCE_ROLE
                for rule in role.rules for g in rule.grants()]  # fmt: skip

    def check(self, requests: Iterable[ApiRequest]) -> Report:
        """Which requests are allowed (and by what), which denied, and which grants none used."""
        report = Report()
        used: set[Grant] = set()
        for request in requests:
            grant = self.allowing(request)
            if grant is None:
                if request not in report.denied:
                    report.denied.append(request)
                continue
            used.add(grant)
            report.allowed.setdefault(request.kind if request.is_resource else (request.verb, request.path, "", "", ""),
                                      grant)  # fmt: skip
        report.unused = [g for g in dict.fromkeys(self.grants()) if g not in used]
        return report


def _names(binding: Mapping[str, Any], subject: ServiceAccount) -> bool:
    for s in binding.get("subjects") or ():
        if s.get("kind") == "ServiceAccount" and s.get("name") == subject.name \
                and s.get("namespace", binding["metadata"].get("namespace")) == subject.namespace:
            return True
    return False
