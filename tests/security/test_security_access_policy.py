"""The authorization policy: every RPC of the protos has its callers, and only those kinds get in."""

from __future__ import annotations

import pytest

from keychain.access import (
    ADMIN,
    COORDINATOR,
    KINDS,
    NODE,
    OPERATOR,
    POLICY,
    PROXY,
    Decision,
    Identity,
    authorize,
    authorize_admin_http,
)
from keychain.proto import chain_pb2, coordinator_pb2, raft_pb2


def who(kind: str) -> Identity:
    return Identity("main", kind, f"{kind}-1")


def methods_of(*modules) -> list[str]:
    return [f"/{service.full_name}/{method.name}"
            for module in modules for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods]


def test_every_internal_rpc_is_in_the_policy_and_nothing_else_is():
    internal = methods_of(chain_pb2, coordinator_pb2, raft_pb2)
    assert set(internal) - set(POLICY) == set()
    health = {"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"}
    assert set(POLICY) - set(internal) == health


def test_a_caller_without_a_keychain_certificate_is_unauthenticated():
    for method in POLICY:
        assert authorize(method, None) is Decision.UNAUTHENTICATED


@pytest.mark.parametrize(("method", "allowed"), [
    ("/keychain.chain.ChainNode/Write", {PROXY}),
    ("/keychain.chain.ChainNode/ReadBatch", {PROXY}),
    ("/keychain.chain.ChainNode/ReadStream", {PROXY}),
    ("/keychain.chain.ChainNode/Link", {NODE}),
    ("/keychain.chain.ChainNode/Transfer", {NODE}),
    ("/keychain.chain.ChainNode/Configure", {ADMIN}),
    ("/keychain.raft.Raft/Step", {COORDINATOR}),
    ("/keychain.raft.Raft/StepStream", {COORDINATOR}),
    ("/keychain.coordinator.Coordinator/RemoveMember", {COORDINATOR, OPERATOR, ADMIN}),
    ("/keychain.coordinator.Coordinator/AddCoordinatorMember", {COORDINATOR, OPERATOR, ADMIN}),
    ("/keychain.coordinator.Coordinator/Register", {NODE, COORDINATOR}),
])
def test_only_the_kinds_that_send_an_rpc_may_call_it(method, allowed):
    for kind in KINDS:
        expected = Decision.ALLOW if kind in allowed else Decision.PERMISSION_DENIED
        assert authorize(method, who(kind)) is expected, (method, kind)


def test_an_unknown_method_is_refused_to_everyone():
    for kind in KINDS:
        assert authorize("/keychain.chain.ChainNode/Frobnicate", who(kind)) is Decision.PERMISSION_DENIED


def test_the_admin_http_api_takes_operators_and_admins_only():
    assert [k for k in KINDS if authorize_admin_http(who(k)) is Decision.ALLOW] == [OPERATOR, ADMIN]
    assert authorize_admin_http(None) is Decision.UNAUTHENTICATED


def test_identities_round_trip_through_their_uri_and_reject_others():
    me = Identity("main", NODE, "node-1")
    assert me.uri == "keychain://main/node/node-1"
    assert Identity.from_uri(me.uri) == me
    for other in ("spiffe://main/node/node-1", "keychain://main/janitor/x", "keychain://main/node", "keychain://a/node/b/c"):
        assert Identity.from_uri(other) is None
