"""The one idempotent reconcile of a Chain: observe, take at most one step, apply, report.

Used by the create/update/resume handlers and by the periodic timer alike. Each call:
reads the node and coordinator StatefulSets and the coordinator's view of the chain and of its
own Raft members, asks the pure stepping core for the next step of each, unlinks a chain member
or adds or removes a coordinator member through the coordinator if that is the step,
creates or patches every rendered object (writing nothing when the live object already
matches), prunes optional objects no longer rendered, grows volume claims whose requested
size was raised, and writes `status` when it changed. The Events of the steps taken (and of
failed ones) come back in the Outcome for the handlers to post. Calls for one Chain are serialized.
"""

from __future__ import annotations

import datetime
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from keychain.operator import certificates, commands
from keychain.operator.coordinator_client import (
    CoordinatorClient,
    CoordinatorError,
    CoordinatorStatus,
)
from keychain.operator.events import Event, coordinator_step_events, failure, node_step_events
from keychain.operator.gray_failures import gray_failure_events
from keychain.operator.kube import KubeApi, KubeError
from keychain.operator.manifests import Manifest, contains, patch_for
from keychain.operator.naming import COORDINATOR_GRPC_PORT, Names, names_of
from keychain.operator.rendering import (
    CoordinatorShape,
    NodeSetShape,
    optional_objects,
    render,
    render_certificates,
)
from keychain.operator.spec import API_VERSION, COORDINATOR_SIZES, KIND, ChainSpec, ChainSpecError
from keychain.operator.status import Observation, build_status, invalid_spec_status
from keychain.operator.stepping import (
    CoordinatorStep,
    Step,
    after_unlink,
    observe_coordinator_set,
    observe_node_set,
    plan_coordinators,
    plan_node_set,
)

from keychain.access import OPERATOR
from keychain.tls import TlsFiles

log = logging.getLogger(__name__)

# The coordinator admin API client of a Chain, given the operator's certificate files for it (None: plaintext).
CoordinatorFactory = Callable[[ChainSpec, TlsFiles | None], CoordinatorClient]


class ChainGone(Exception):
    """The Chain was deleted while its reconcile was pending."""


class OwnershipConflict(Exception):
    """An object with a rendered name exists but belongs to something else."""


@dataclass(frozen=True)
class Outcome:
    step: Step
    status: dict[str, Any]
    coordinator_step: CoordinatorStep | None = None
    events: tuple[Event, ...] = ()

    @property
    def converged(self) -> bool:
        return self.step.converged and (self.coordinator_step is None or self.coordinator_step.converged)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_cluster_coordinators(spec: ChainSpec, tls_files: TlsFiles | None) -> CoordinatorClient:
    """The Chain's own coordinator members, by their stable pod DNS names: every ordinal a member can
    have (lowest first: those always exist), so one answers during and after a resize. Over HTTPS
    with the operator's certificate when the Chain runs TLS."""
    urls = names_of(spec).coordinator_admin_urls(max(COORDINATOR_SIZES), https=spec.tls.enabled)
    return CoordinatorClient(urls, tls_files=tls_files)


def utc_datetime() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Reconciler:
    def __init__(
        self,
        kube: KubeApi,
        *,
        default_image: str,
        coordinators: CoordinatorFactory = in_cluster_coordinators,
        now: Callable[[], str] = utc_now,
        scrape_annotations: bool = False,
        operator_peer: Mapping[str, Any] | None = None,
        credentials_dir: Path | None = None,
        clock: Callable[[], datetime.datetime] = utc_datetime,
    ) -> None:
        """`operator_peer`: the NetworkPolicy peer selecting the operator's pod; `credentials_dir`: where
        the operator keeps its client certificate files for each Chain (default: a new temporary
        directory); `clock`: the time certificates are issued and judged at."""
        self._kube = kube
        self._operator_peer = operator_peer
        self._credentials_dir = credentials_dir
        self._clock = clock
        self._scrape_annotations = scrape_annotations
        self._default_image = default_image
        self._coordinators = coordinators
        self._now = now
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def close(self) -> None:
        self._kube.close()

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        """Bring the Chain's objects one step closer to its spec; raises ChainSpecError on bad specs."""
        meta = body.get("metadata", {})
        namespace, name = meta.get("namespace"), meta.get("name")
        if not namespace or not name:
            raise ChainSpecError("metadata.name and metadata.namespace: required")
        with self._lock(f"{namespace}/{name}"):
            # The Chain as stored now: handlers and the timer may hold bodies older than the
            # last reconcile's status write or the user's last spec change.
            current = self._kube.get(API_VERSION, KIND, namespace, name)
            if current is None:
                raise ChainGone(f"Chain {namespace}/{name} no longer exists")
            try:
                spec = ChainSpec.from_resource(current, default_image=self._default_image)
            except ChainSpecError as exc:
                self._report_invalid(current, str(exc))
                raise
            return self._reconcile(spec, current.get("status") or {})

    def _report_invalid(self, chain: Mapping[str, Any], message: str) -> None:
        """Say in the status why the spec is refused; nothing else is touched."""
        meta, previous = chain["metadata"], chain.get("status") or {}
        status = invalid_spec_status(previous, f"invalid spec: {message}", meta.get("generation"), self._now())
        if not contains(previous, status):
            self._kube.merge_patch(API_VERSION, KIND, meta["namespace"], meta["name"], {"status": status}, status=True)

    def _reconcile(self, spec: ChainSpec, previous_status: Mapping[str, Any]) -> Outcome:
        names = names_of(spec)
        live_nodes = self._kube.get("apps/v1", "StatefulSet", spec.namespace, names.nodes)
        if live_nodes is not None:
            _check_owner(spec, live_nodes)
        live_coordinators = self._kube.get("apps/v1", "StatefulSet", spec.namespace, names.coordinator)
        coordinator_set = observe_coordinator_set(live_coordinators) if live_coordinators else None
        initial = self._initial_coordinators(spec, names)
        # The node pods' template as rendered now (its config hash depends on the initial coordinators).
        desired = render(spec, None, CoordinatorShape(spec.coordinator.replicas, initial),
                         scrape_annotations=self._scrape_annotations, operator_peer=self._operator_peer)  # fmt: skip
        desired_nodes = _find(desired, "StatefulSet", names.nodes)
        node_set = observe_node_set(live_nodes, desired_nodes) if live_nodes else None

        events: list[Event] = []
        with self._coordinators(spec, self._operator_credentials(spec, names)) as coordinator:
            view, coordinator_error = _coordinator_status(coordinator)
            chain = view.chains.get(spec.name) if view else None
            step = plan_node_set(spec.replicas, node_set, chain, names)
            unlinked = step
            if step.remove_member:
                step = self._unlink(coordinator, spec, step, events)
                unlinked = step if step.waiting_for == unlinked.waiting_for else replace(step, remove_member=None)
                if unlinked.remove_member:
                    step = after_unlink(step, names)
            coordinator_step = plan_coordinators(
                spec.coordinator.replicas, coordinator_set, view.members if view else None, names
            )
            if coordinator_step.add_member or coordinator_step.remove_member:
                coordinator_step = self._change_coordinator(coordinator, names, coordinator_step, events)
        events[:0] = node_step_events(node_set, unlinked, names) + coordinator_step_events(
            coordinator_set, coordinator_step, names
        )

        applied = {}
        shapes = NodeSetShape(step.replicas, step.partition), CoordinatorShape(coordinator_step.replicas, initial)
        for manifest in render(spec, *shapes, scrape_annotations=self._scrape_annotations,
                               operator_peer=self._operator_peer):
            applied[(manifest["kind"], manifest["metadata"]["name"])] = self._apply(spec, manifest)
        self._prune(spec, names, set(applied))
        self._grow_claims(spec, names, step.replicas, coordinator_step.replicas)

        for taken in (step, coordinator_step):
            if not taken.converged:
                log.info("step chain=%s/%s activity=%s replicas=%d waiting=%r", spec.namespace, spec.name,
                         taken.activity.value, taken.replicas, taken.waiting_for)  # fmt: skip
        # The status describes the cluster as this step left it, so an unchanged cluster
        # gets an unchanged status (and no write) on the next reconcile.
        rendered_nodes = applied[("StatefulSet", names.nodes)]
        node_set_after = observe_node_set(rendered_nodes, desired_nodes)
        pending = step if step.remove_member else plan_node_set(spec.replicas, node_set_after, chain, names)
        proxy = applied.get(("Deployment", names.proxy), {})
        seen = Observation(
            desired_replicas=spec.replicas,
            generation=spec.generation,
            node_set=node_set_after,
            chain=chain,
            leader=view.leader if view else None,
            coordinator_error=coordinator_error,
            proxies_available=int((proxy.get("status") or {}).get("availableReplicas", 0)),
            step=pending,
            coordinator_step=coordinator_step,
        )
        status = build_status(names, seen, previous_status, self._now())
        if not contains(previous_status, status):
            self._kube.merge_patch(API_VERSION, KIND, spec.namespace, spec.name, {"status": status}, status=True)
        if chain is not None:
            # After the status write: the status is the memory of what was reported (see gray_failures).
            events += gray_failure_events(previous_status, chain)
        return Outcome(step, status, coordinator_step, tuple(events))

    def _operator_credentials(self, spec: ChainSpec, names: Names) -> TlsFiles | None:
        """The Chain's certificates brought up to date (issued here, or asked of cert-manager), and the
        operator's own written to local files for the admin API client; None without TLS, or while
        cert-manager has not issued it yet."""
        if not spec.tls.enabled:
            return None
        if spec.tls.issuer_ref is None:
            self._issue_certificates(spec, names)
        else:
            for manifest in render_certificates(spec, names):
                self._apply(spec, manifest)
        secret = self._kube.get("v1", "Secret", spec.namespace, certificates.secret_name(names, OPERATOR))
        pems = [certificates.secret_pem(secret, key)
                for key in (certificates.CERT_KEY, certificates.KEY_KEY, certificates.CA_KEY)]  # fmt: skip
        if any(pem is None for pem in pems):
            log.info("waiting for the operator certificate chain=%s/%s", spec.namespace, spec.name)
            return None
        if self._credentials_dir is None:
            self._credentials_dir = Path(tempfile.mkdtemp(prefix="keychain-operator-"))
        directory = self._credentials_dir / spec.namespace / spec.name
        files = TlsFiles(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")
        for path, pem in zip((files.key, files.cert, files.ca), (pems[1], pems[0], pems[2]), strict=True):
            if not path.exists() or path.read_bytes() != pem:
                _write_private(path, pem)  # type: ignore[arg-type]
        return files

    def _issue_certificates(self, spec: ChainSpec, names: Names) -> None:
        """Issue what `plan_certificates` says is missing or due: the CA first, then the components'."""
        now = self._clock()
        live_ca = self._kube.get("v1", "Secret", spec.namespace, certificates.secret_name(names, "ca"))
        if live_ca is not None:
            _check_owner(spec, live_ca)
        authority = certificates.authority_from_secret(live_ca)
        wanted = certificates.wanted_certificates(names)
        held = {}
        for kind in wanted:
            live = self._kube.get("v1", "Secret", spec.namespace, certificates.secret_name(names, kind))
            if live is not None:
                _check_owner(spec, live)
            held[kind] = certificates.held_from_secret(live)
        ca_held = certificates.held_of(authority.current.certificate) if authority else None
        plan = certificates.plan_certificates(wanted, held, ca_held, authority.key_id if authority else None, now)
        if plan.nothing:
            return
        if plan.new_ca or authority is None:
            authority = certificates.new_authority(spec.name, authority, now)
            self._write_secret(spec, live_ca, certificates.authority_secret(spec, names, authority))
            log.info("issued ca chain=%s/%s not_after=%s", spec.namespace, spec.name, authority.current.not_after)
        for kind in plan.kinds:
            secret = certificates.component_secret(spec, names, authority, wanted[kind], now)
            live = self._kube.get("v1", "Secret", spec.namespace, secret["metadata"]["name"])
            self._write_secret(spec, live, secret)
            log.info("issued certificate chain=%s/%s kind=%s", spec.namespace, spec.name, kind)

    def _write_secret(self, spec: ChainSpec, live: Mapping[str, Any] | None, secret: Manifest) -> None:
        if live is None:
            self._kube.create(secret)
        else:
            self._kube.merge_patch("v1", "Secret", spec.namespace, secret["metadata"]["name"], patch_for(secret, live)
                                   or {"data": secret["data"]})  # fmt: skip

    def _initial_coordinators(self, spec: ChainSpec, names: Names) -> int:
        """The Raft cluster's initial size: what the live ConfigMap says, else (a new Chain) the spec's."""
        live = self._kube.get("v1", "ConfigMap", spec.namespace, names.config_map)
        named = commands.initial_coordinators((live or {}).get("data") or {})
        return named or spec.coordinator.replicas

    def _unlink(self, coordinator: CoordinatorClient, spec: ChainSpec, step: Step, events: list[Event]) -> Step:
        assert step.remove_member is not None
        try:
            coordinator.remove_member(spec.name, step.remove_member)
        except CoordinatorError as exc:
            log.warning("member removal failed chain=%s member=%s error=%s", spec.name, step.remove_member, exc)
            events.append(failure("MemberRemovalFailed", f"unlinking {step.remove_member} failed: {exc}"))
            return replace(step, waiting_for=f"{step.remove_member} to leave the chain ({exc})")
        return step

    def _change_coordinator(
        self, coordinator: CoordinatorClient, names: Names, step: CoordinatorStep, events: list[Event]
    ) -> CoordinatorStep:
        """Add or remove the coordinator member the step names; on failure the step only waits."""
        member = step.add_member or step.remove_member
        assert member is not None
        try:
            if step.add_member:
                address = f"{names.coordinator_host(names.coordinator_ordinal(member) or 0)}:{COORDINATOR_GRPC_PORT}"
                coordinator.add_coordinator(member, address)
            else:
                coordinator.remove_coordinator(member)
        except CoordinatorError as exc:
            what = "adding" if step.add_member else "removing"
            log.warning("coordinator membership change failed member=%s change=%s error=%s", member, what, exc)
            events.append(failure("CoordinatorMemberAddFailed" if step.add_member else "CoordinatorMemberRemoveFailed",
                                  f"{what} coordinator member {member} failed: {exc}"))  # fmt: skip
            return replace(step, add_member=None, remove_member=None, waiting_for=f"{step.waiting_for} ({exc})")
        return step

    def _apply(self, spec: ChainSpec, manifest: Manifest) -> dict[str, Any]:
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        name = manifest["metadata"]["name"]
        live = self._kube.get(api_version, kind, spec.namespace, name)
        if live is None:
            try:
                return self._kube.create(manifest)
            except KubeError as exc:
                if exc.status != 409:
                    raise
                live = self._kube.get(api_version, kind, spec.namespace, name)
                if live is None:
                    raise
        _check_owner(spec, live)
        patch = patch_for(manifest, live)
        if patch is None:
            return live
        return self._kube.merge_patch(api_version, kind, spec.namespace, name, patch)

    def _prune(self, spec: ChainSpec, names: Names, rendered: set[tuple[str, str]]) -> None:
        for api_version, kind, name in optional_objects(names):
            if (kind, name) in rendered:
                continue
            live = self._kube.get(api_version, kind, spec.namespace, name)
            if live is not None and _owned_by(spec, live):
                self._kube.delete(api_version, kind, spec.namespace, name)

    def _grow_claims(self, spec: ChainSpec, names: Names, node_replicas: int, coordinator_replicas: int) -> None:
        """Raise the requested size of existing claims; StatefulSets cannot change their templates."""
        from kubernetes.utils import parse_quantity  # slow to import; only needed here

        claims = [(names.node_claim(i), spec.storage.size) for i in range(node_replicas)]
        claims += [(names.coordinator_claim(i), spec.coordinator.storage.size) for i in range(coordinator_replicas)]
        for claim, size in claims:
            live = self._kube.get("v1", "PersistentVolumeClaim", spec.namespace, claim)
            if live is None:
                continue
            requested = live.get("spec", {}).get("resources", {}).get("requests", {}).get("storage")
            if requested is None or parse_quantity(requested) < parse_quantity(size):
                patch = {"spec": {"resources": {"requests": {"storage": size}}}}
                self._kube.merge_patch("v1", "PersistentVolumeClaim", spec.namespace, claim, patch)

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())


def _write_private(path: Path, data: bytes) -> None:
    """Write a credential file readable by the operator alone, replacing it whole."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.touch(mode=0o600)
    tmp.write_bytes(data)
    tmp.replace(path)


def _coordinator_status(client: CoordinatorClient) -> tuple[CoordinatorStatus | None, str | None]:
    try:
        return client.status(), None
    except CoordinatorError as exc:
        return None, str(exc)


def _find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    return next(m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name)


def _owned_by(spec: ChainSpec, live: Mapping[str, Any]) -> bool:
    owners = live.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == spec.uid for ref in owners)


def _check_owner(spec: ChainSpec, live: Mapping[str, Any]) -> None:
    if not _owned_by(spec, live):
        meta = live.get("metadata", {})
        raise OwnershipConflict(
            f"{live.get('kind', 'object')} {meta.get('namespace')}/{meta.get('name')} exists and is not "
            f"owned by Chain {spec.name}; delete or rename it"
        )
