"""The kopf handlers: thin wrappers that hand every Chain event to the one reconcile.

Creation, updates and operator restarts (resume) reconcile at once; a timer reconciles
every `interval` seconds, which takes the next gated membership or upgrade step and
refreshes `status` from the coordinator. The handlers live in a registry built on demand,
so an operator process (or a test) chooses its own settings and reconciler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import kopf
from keychain.operator.events import Event, failure
from keychain.operator.reconcile import ChainGone, Reconciler
from keychain.operator.spec import GROUP, PLURAL, VERSION, ChainSpecError

FINALIZER = "keychain.dev/operator"


@dataclass(frozen=True)
class HandlerSettings:
    interval: float = 10.0  # seconds between timer reconciles of each Chain
    retry_delay: float = 5.0  # seconds before a failed reconcile is retried


def build_registry(settings: HandlerSettings) -> kopf.OperatorRegistry:
    """A registry with the Chain handlers; the memo must carry a `reconciler`."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.posting.level = logging.WARNING  # Kubernetes Events only for problems

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    def reconcile_chain(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        _reconcile(memo, body, settings.retry_delay)

    @kopf.timer(GROUP, VERSION, PLURAL, interval=settings.interval, backoff=settings.retry_delay, registry=registry)
    def step_chain(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
        try:
            _reconcile(memo, body, settings.retry_delay)
        except kopf.PermanentError as exc:
            # Reported by the change handlers; the timer keeps ticking for when the spec is fixed.
            logger.warning("skipped reason=%r", str(exc))

    return registry


def _reconcile(memo: kopf.Memo, body: kopf.Body, retry_delay: float) -> None:
    reconciler: Reconciler = memo["reconciler"]
    try:
        outcome = reconciler.reconcile(body)
    except ChainGone:
        return
    except ChainSpecError as exc:
        _post(body, failure("InvalidSpec", f"invalid Chain: {exc}"))
        raise kopf.PermanentError(f"invalid Chain: {exc}") from exc
    except Exception as exc:
        _post(body, failure("ReconcileFailed", f"reconcile failed: {exc}"))
        raise kopf.TemporaryError(f"reconcile failed: {exc}", delay=retry_delay) from exc
    for event in outcome.events:
        _post(body, event)


def _post(body: kopf.Body, event: Event) -> None:
    """Record a Kubernetes Event on the Chain (kopf posts it in the background)."""
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)
