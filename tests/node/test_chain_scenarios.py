"""Scripted scenarios of the chain core: tests/node/scenarios/*.txt, expected output inline.

Commands (one chain per file):
  options key=N value=N request_id=N batch=N batch_bytes=N inflight=N retain=N dedup=N chunk=N
          txn_ops=N txn_bytes=N range_items=N retain_versions=N   core options, before `nodes`
  nodes n1,n2,...                      create nodes with empty in-memory stores
  bootstrap n1,n2,... [active=a,b] [lease=T]   quietly: create the nodes, configure epoch 1 (the
                                       active members, default all) and stabilize; prints nothing
  config epoch=E active=a,b [syncing=c] [to=a,b] [lease=T]   configure (default: every node listed)
  lease node=N until=T | time T       renew a lease | set the clock
  put node=N key=K value=V [id=R] [if_version=V] [if_absent=1] [epoch=E]
  delete node=N key=K [id=R] [if_version=V]
  write node=N   + input lines "put K V [id=R] [if_version=V] [if_absent=1]" / "delete K ..."
  get node=N key=K [eventual=1] [epoch=E]
  txn node=N [id=R]   + input lines "if K version=N|version!=N|version>N|version<N|value=V|value!=V|exists|missing",
                        "then put K V" / "then delete K" / "then get K", "else ..." (the failure branch)
  range node=N start=A [end=B] [limit=N] [keys_only=1] [eventual=1] [snapshot=S]
  process N | deliver from=A to=B [count=C] | drop from=A to=B | stabilize [nodes=a,b]
  retry N (link backoff ran out) | crash N | restart N | status N | dump N | vquery node=N keys=a,b [epoch=E]
  watch W node=N [after=V] [start=K] [end=K] [epoch=E]   open watch W on N: its first batch (empty if nothing)
  poll W [heartbeat=1]                 what watch W is sent next (nothing new: no batch, unless a heartbeat)
  (`options watch_changes=N` bounds every node's watch history)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chain_harness import Chain, config_of, show_reply
from keychain.node.core import CoreOptions
from keychain.node.messages import (
    Compare,
    CompareResult,
    CompareTarget,
    Consistency,
    EntryKind,
    OpKind,
    RangeRead,
    Txn,
    TxnOp,
    TxnOpKind,
    WriteOp,
)
from keychain.node.watch_history import WatchBatch, WatchCursor

from keychain.testing import datadriven

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.txt"))


def _op(kind: str, key: str, value: str, args: dict[str, str]) -> WriteOp:
    return WriteOp(
        request_id=args.get("id", ""),
        key=key.encode(),
        kind=OpKind.DELETE if kind == "delete" else OpKind.PUT,
        value=value.encode(),
        if_version=int(args["if_version"]) if "if_version" in args else None,
        if_absent=args.get("if_absent") == "1",
    )


_RESULTS = {"=": CompareResult.EQUAL, "!=": CompareResult.NOT_EQUAL, ">": CompareResult.GREATER,
            "<": CompareResult.LESS}


def _compare(key: str, test: str) -> Compare:
    if test in ("exists", "missing"):
        return Compare(key.encode(), CompareResult.EQUAL, CompareTarget.EXISTS, exists=test == "exists")
    for name, target in (("version", CompareTarget.VERSION), ("value", CompareTarget.VALUE)):
        if test.startswith(name):
            rest = test[len(name):]
            op = "!=" if rest.startswith("!=") else rest[0]
            operand = rest[len(op):]
            if target == CompareTarget.VERSION:
                return Compare(key.encode(), _RESULTS[op], target, version=int(operand))
            return Compare(key.encode(), _RESULTS[op], target, value=operand.encode())
    raise datadriven.ScenarioError(f"unknown compare {test!r}")


def _txn(lines: str) -> Txn:
    compares: list[Compare] = []
    branches: dict[str, list[TxnOp]] = {"then": [], "else": []}
    kinds = {"put": TxnOpKind.PUT, "delete": TxnOpKind.DELETE, "get": TxnOpKind.GET}
    for line in lines.splitlines():
        words = line.split()
        if words[0] == "if":
            compares.append(_compare(words[1], words[2]))
        else:
            value = words[3].encode() if len(words) > 3 else b""
            branches[words[0]].append(TxnOp(kinds[words[1]], words[2].encode(), value))
    return Txn(tuple(compares), tuple(branches["then"]), tuple(branches["else"]))


class Runner:
    def __init__(self) -> None:
        self.chain = Chain()
        self.watches: dict[str, tuple[str, WatchCursor]] = {}  # name -> (node, cursor)

    def __call__(self, case: datadriven.Case) -> str:
        return "\n".join(self.run(case))

    def run(self, case: datadriven.Case) -> list[str]:
        c = self.chain
        a = case.args
        match case.command:
            case "options":
                names = {"key": "max_key_bytes", "value": "max_value_bytes", "batch": "max_batch_entries",
                         "inflight": "max_inflight_entries", "retain": "retain_entries",
                         "dedup": "dedup_window", "chunk": "transfer_chunk_keys", "batch_bytes": "max_batch_bytes",
                         "request_id": "max_request_id_bytes", "txn_ops": "max_txn_ops",
                         "txn_bytes": "max_txn_bytes", "range_items": "max_range_items",
                         "retain_versions": "retain_versions"}
                c.watch_changes = int(a.get("watch_changes", c.watch_changes))
                c.options = CoreOptions(**{names[k]: int(v) for k, v in a.items() if k != "watch_changes"})
                return []
            case "nodes":
                for nid in case.words[0].split(","):
                    c.add(nid)
                return []
            case "bootstrap":
                return self._bootstrap(case)
            case "config":
                cfg = config_of("c1", case.int_arg("epoch"), case.list_arg("active"), case.list_arg("syncing", []))
                to = case.list_arg("to", cfg.ids())
                lease = float(a["lease"]) if "lease" in a else None
                return c.configure(cfg, to, lease)
            case "lease":
                c.core(a["node"]).renew_lease(float(a["until"]))
                return []
            case "time":
                c.now = float(case.words[0])
                return []
            case "put" | "delete":
                op = _op(case.command, a["key"], a.get("value", ""), a)
                return self._write(a["node"], [op], a)
            case "write":
                ops = []
                for line in case.input.splitlines():
                    _, words, args = datadriven.parse_command("x " + line)
                    ops.append(_op(words[0], words[1], words[2] if len(words) > 2 else "", args))
                return self._write(a["node"], ops, a)
            case "txn":
                op = WriteOp(a.get("id", ""), b"", OpKind.TXN, txn=_txn(case.input))
                return self._write(a["node"], [op], a)
            case "range":
                r = RangeRead(a["start"].encode(), a.get("end", "").encode(), int(a.get("limit", "0")),
                              a.get("keys_only") == "1",
                              Consistency.EVENTUAL if a.get("eventual") == "1" else Consistency.STRONG,
                              int(a.get("snapshot", "0")))
                ticket, reply = c.range(a["node"], r, int(a["epoch"]) if "epoch" in a else None)
                return [f"t{ticket}: {show_reply(reply)}"]
            case "get":
                consistency = Consistency.EVENTUAL if a.get("eventual") == "1" else Consistency.STRONG
                epoch = int(a["epoch"]) if "epoch" in a else None
                ticket, reply = c.read(a["node"], a["key"].encode(), consistency, epoch)
                return [f"t{ticket}: {show_reply(reply)}"]
            case "process":
                return c.process(case.words[0])
            case "deliver":
                out = []
                for _ in range(case.int_arg("count", 1 << 30)):
                    if not c.queues.get((a["from"], a["to"])):
                        break
                    out.extend(c.deliver_one(a["from"], a["to"]))
                return out
            case "drop":
                q = c.queues.get((a["from"], a["to"]))
                n = len(q) if q else 0
                if q:
                    q.clear()
                return [f"dropped {n}"]
            case "stabilize":
                return c.stabilize(case.list_arg("nodes", None) if "nodes" in a else None)
            case "retry":
                c.core(case.words[0]).retry_link()
                return []
            case "crash":
                return c.crash(case.words[0])
            case "restart":
                return c.restart(case.words[0])
            case "status":
                s = c.core(case.words[0]).status(c.now)
                return [f"{s.id}: epoch={s.epoch} role={s.role} last={s.last_seq} committed={s.committed_seq} "
                        f"reads={s.reads} writes={s.writes} version_queries={s.version_queries} "
                        f"lease_valid={s.lease_valid} keys={s.keys} in_sync={s.in_sync}"]
            case "dump":
                return c.dump(case.words[0])
            case "vquery":
                core = c.core(a["node"])
                r = core.on_version_query(int(a.get("epoch", core.epoch)), [k.encode() for k in case.list_arg("keys")],
                                          c.now)
                if not r.error.ok:
                    return [f"{r.error.code.name} (epoch {r.error.epoch}): {r.error.message}"]
                return [" ".join(str(v) for v in r.versions)]
            case "watch":
                node, name = a["node"], case.words[0]
                cursor = WatchCursor(a.get("start", "").encode(), a.get("end", "").encode(), int(a.get("after", 0)))
                self.watches[name] = (node, cursor)
                core = c.core(node)
                batch = cursor.gate(core, c.now, int(a.get("epoch", core.epoch))) or cursor.next(
                    c.driver(node).history, heartbeat=True)
                return [_show_batch(name, node, batch)]
            case "poll":
                name = case.words[0]
                node, cursor = self.watches[name]
                if not c.up(node):
                    return [f"{name}: {node} is down"]
                batch = cursor.gate(c.core(node), c.now) or cursor.next(
                    c.driver(node).history, heartbeat=a.get("heartbeat") == "1")
                return [_show_batch(name, node, batch)]
        raise datadriven.ScenarioError(f"{case.where}: unknown command {case.command}")

    def _bootstrap(self, case: datadriven.Case) -> list[str]:
        """A chain in epoch 1 with its links up, set up without a trace: most scenarios are about what
        comes after. Fails if a member is left out of sync."""
        c = self.chain
        ids = case.words[0].split(",")
        for nid in ids:
            c.add(nid)
        active = case.list_arg("active", ids)
        lease = float(case.args["lease"]) if "lease" in case.args else None
        for line in c.configure(config_of("c1", 1, active), active, lease):
            if not line.endswith(": ok"):
                raise datadriven.ScenarioError(f"{case.where}: bootstrap: {line}")
        c.stabilize()
        lagging = [nid for nid in active if not c.core(nid).in_sync]
        if lagging:
            raise datadriven.ScenarioError(f"{case.where}: bootstrap left {', '.join(lagging)} out of sync")
        return []

    def _write(self, node: str, ops: list[WriteOp], a: dict[str, str]) -> list[str]:
        ticket, reply = self.chain.write(node, ops, int(a["epoch"]) if "epoch" in a else None)
        return [f"t{ticket}: {show_reply(reply)}"]


def _show_batch(name: str, node: str, b: WatchBatch | None) -> str:
    if b is None:
        return f"{name}: nothing new"
    if not b.error.ok:
        extra = f" compact_version={b.compact_version}" if b.compact_version else ""
        return f"{name} <- {node}: {b.error.code.name}{extra}: {b.error.message}"
    changes = " ".join(f"{ch.version}:{'put' if ch.kind == EntryKind.PUT else 'del'} {ch.key.decode()}"
                       + (f"={ch.value.decode()}" if ch.kind == EntryKind.PUT else "") for ch in b.changes)
    return f"{name} <- {node}: [{changes}] through {b.committed_seq}"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    datadriven.run_file(path, Runner())
