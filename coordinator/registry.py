"""The chain registry: the coordinator's replicated state machine, applied from committed entries.

State: chains -> {epoch, ordered members}. Members are listed head .. tail (ACTIVE), then the
SYNCING ones, exactly the order of keychain.chain.ChainConfig. Every change raises the chain's
epoch by one, so a node can tell a newer configuration from an older one.

Commands are small JSON documents (built by the functions below, e.g. `register_node(...)`).
`Registry.apply(data)` is deterministic: every coordinator applies the same committed commands in
the same order and reaches the same state. An invalid command changes nothing and yields an
`Outcome` carrying a `RegistryError` whose code matches keychain.coordinator.Code; it never
raises, because a committed entry must be applied (or refused) alike everywhere.

Rules:
- register: an unknown node is appended after the tail as SYNCING — except in a chain with no
  active member, where there is nothing to sync from and it becomes ACTIVE at once. A known node
  at the same address is left where it is (a restart; no new epoch). The same id at a different
  address is refused (ALREADY_EXISTS).
- promote: a SYNCING node that caught up becomes ACTIVE as the new tail.
- remove: unlinks a node wherever it is (head, middle, tail or syncing); the last ACTIVE member
  is never removed (FAILED_PRECONDITION). `if_epoch` makes a removal conditional on the chain
  not having changed since the decision (the failure detector uses it).
- A deleted chain remembers its last epoch; created again, it continues above it, so no epoch
  value is ever reused for a different configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keychain.proto import chain_pb2

MAX_NAME = 253  # a DNS name's length; chain and node ids end up in Kubernetes object names


class MemberState(StrEnum):
    ACTIVE = "active"
    SYNCING = "syncing"


class ErrorCode(StrEnum):
    """The codes of keychain.coordinator.Code that a registry command can fail with."""

    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"


class RegistryError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


@dataclass(frozen=True, slots=True)
class ChainMember:
    id: str
    address: str
    state: MemberState


@dataclass(frozen=True, slots=True)
class ChainState:
    name: str
    epoch: int
    members: tuple[ChainMember, ...] = ()

    @property
    def active(self) -> tuple[ChainMember, ...]:
        return tuple(m for m in self.members if m.state is MemberState.ACTIVE)

    def member(self, node: str) -> ChainMember | None:
        return next((m for m in self.members if m.id == node), None)

    def to_proto(self) -> chain_pb2.ChainConfig:
        # Imported here: only the gRPC shells convert, and the pure cores that use this module
        # (supervision, the simulator) stay free of protobuf.
        from keychain.proto import chain_pb2

        states = {MemberState.ACTIVE: chain_pb2.ACTIVE, MemberState.SYNCING: chain_pb2.SYNCING}
        return chain_pb2.ChainConfig(
            chain=self.name,
            epoch=self.epoch,
            members=[chain_pb2.Member(id=m.id, address=m.address, state=states[m.state]) for m in self.members],
        )

    def describe(self) -> str:
        members = " ".join(f"{m.id}@{m.address}" + ("(syncing)" if m.state is MemberState.SYNCING else "")
                           for m in self.members)
        return f"{self.name} epoch={self.epoch} [{members}]"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of applying one command: the chain's configuration after it, or the error."""

    chain: ChainState | None = None
    error: RegistryError | None = None
    changed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


# ---- commands ----


def _command(**fields: Any) -> bytes:
    return json.dumps({k: v for k, v in fields.items() if v is not None}, sort_keys=True).encode()


def create_chain(chain: str) -> bytes:
    return _command(op="create_chain", chain=chain)


def delete_chain(chain: str) -> bytes:
    return _command(op="delete_chain", chain=chain)


def register_node(chain: str, node: str, address: str) -> bytes:
    return _command(op="register", chain=chain, node=node, address=address)


def promote_node(chain: str, node: str) -> bytes:
    return _command(op="promote", chain=chain, node=node)


def remove_node(chain: str, node: str, if_epoch: int | None = None) -> bytes:
    return _command(op="remove", chain=chain, node=node, if_epoch=if_epoch)


# ---- the state machine ----


@dataclass
class Registry:
    chains: dict[str, ChainState] = field(default_factory=dict)
    retired_epochs: dict[str, int] = field(default_factory=dict)  # deleted chain -> its last epoch

    def get(self, chain: str) -> ChainState | None:
        return self.chains.get(chain)

    def apply(self, data: bytes) -> Outcome:
        try:
            cmd = _decode_command(data)
            return self._apply(cmd)
        except RegistryError as exc:
            return Outcome(chain=None, error=exc)

    def _apply(self, cmd: dict[str, Any]) -> Outcome:
        op = cmd["op"]
        name = _name(cmd, "chain")
        if op == "create_chain":
            if name in self.chains:
                raise RegistryError(ErrorCode.ALREADY_EXISTS, f"chain {name!r} already exists")
            state = ChainState(name, self.retired_epochs.pop(name, 0) + 1)
            self.chains[name] = state
            return Outcome(state, changed=True)
        current = self._chain(name)
        if op == "delete_chain":
            del self.chains[name]
            self.retired_epochs[name] = current.epoch
            return Outcome(current, changed=True)
        node = _name(cmd, "node")
        if op == "register":
            return self._register(current, node, _address(cmd))
        existing = current.member(node)
        if existing is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"node {node!r} is not a member of chain {name!r}")
        if op == "promote":
            if existing.state is not MemberState.SYNCING:
                raise RegistryError(ErrorCode.FAILED_PRECONDITION, f"node {node!r} is already active")
            promoted = ChainMember(node, existing.address, MemberState.ACTIVE)
            others = [m for m in current.members if m.id != node]
            active = [m for m in others if m.state is MemberState.ACTIVE]
            syncing = [m for m in others if m.state is MemberState.SYNCING]
            return self._set(current, (*active, promoted, *syncing))
        if op == "remove":
            if_epoch = cmd.get("if_epoch")
            if if_epoch is not None and if_epoch != current.epoch:
                raise RegistryError(
                    ErrorCode.FAILED_PRECONDITION,
                    f"chain {name!r} is at epoch {current.epoch}, not {if_epoch}; removal of {node!r} is stale",
                )
            if existing.state is MemberState.ACTIVE and len(current.active) == 1:
                raise RegistryError(
                    ErrorCode.FAILED_PRECONDITION,
                    f"node {node!r} is the last active member of chain {name!r} and cannot be removed",
                )
            return self._set(current, tuple(m for m in current.members if m.id != node))
        raise RegistryError(ErrorCode.INVALID_ARGUMENT, f"unknown registry command {op!r}")  # pragma: no cover

    def _register(self, current: ChainState, node: str, address: str) -> Outcome:
        existing = current.member(node)
        if existing is not None:
            if existing.address != address:
                raise RegistryError(
                    ErrorCode.ALREADY_EXISTS,
                    f"node {node!r} is already in chain {current.name!r} at {existing.address}, not {address}",
                )
            return Outcome(current, changed=False)
        clash = next((m for m in current.members if m.address == address), None)
        if clash is not None:
            raise RegistryError(
                ErrorCode.ALREADY_EXISTS, f"address {address} is already used by node {clash.id!r}"
            )
        state = MemberState.SYNCING if current.active else MemberState.ACTIVE
        return self._set(current, (*current.members, ChainMember(node, address, state)))

    def _set(self, current: ChainState, members: tuple[ChainMember, ...]) -> Outcome:
        state = ChainState(current.name, current.epoch + 1, members)
        self.chains[current.name] = state
        return Outcome(state, changed=True)

    def _chain(self, name: str) -> ChainState:
        state = self.chains.get(name)
        if state is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"chain {name!r} does not exist")
        return state

    # ---- snapshots ----

    def snapshot(self) -> bytes:
        body = {
            "chains": [
                {
                    "name": c.name,
                    "epoch": c.epoch,
                    "members": [{"id": m.id, "address": m.address, "state": m.state.value} for m in c.members],
                }
                for c in sorted(self.chains.values(), key=lambda c: c.name)
            ],
            "retired_epochs": dict(sorted(self.retired_epochs.items())),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def restore(cls, data: bytes) -> Registry:
        """A registry from `snapshot()` bytes (empty bytes: an empty registry)."""
        if not data:
            return cls()
        try:
            body = json.loads(data)
            chains = {}
            for c in body["chains"]:
                members = tuple(
                    ChainMember(str(m["id"]), str(m["address"]), MemberState(m["state"])) for m in c["members"]
                )
                state = ChainState(str(c["name"]), int(c["epoch"]), members)
                chains[state.name] = state
            retired = {str(k): int(v) for k, v in body.get("retired_epochs", {}).items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(ErrorCode.INVALID_ARGUMENT, f"malformed registry snapshot: {exc}") from exc
        return cls(chains, retired)


def _decode_command(data: bytes) -> dict[str, Any]:
    try:
        cmd = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryError(ErrorCode.INVALID_ARGUMENT, f"registry command is not JSON: {exc}") from exc
    ops = ("create_chain", "delete_chain", "register", "promote", "remove")
    if not isinstance(cmd, dict) or cmd.get("op") not in ops:
        raise RegistryError(ErrorCode.INVALID_ARGUMENT, f"registry command needs op, one of {', '.join(ops)}")
    if "if_epoch" in cmd and (not isinstance(cmd["if_epoch"], int) or isinstance(cmd["if_epoch"], bool)):
        raise RegistryError(ErrorCode.INVALID_ARGUMENT, "if_epoch must be an integer")
    return cmd


def _name(cmd: dict[str, Any], key: str) -> str:
    value = cmd.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or not value.isprintable() or " " in value:
        raise RegistryError(
            ErrorCode.INVALID_ARGUMENT, f"{key} must be a non-empty name of at most {MAX_NAME} printable characters"
        )
    return value


def _address(cmd: dict[str, Any]) -> str:
    value = cmd.get("address")
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RegistryError(ErrorCode.INVALID_ARGUMENT, f"address must be host:port, got {value!r}")
    return value
