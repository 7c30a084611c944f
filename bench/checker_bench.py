"""How fast the linearizability checker gets through a realistic history.

Generates histories the way the simulator produces them (several clients, a few keys, heavy
real-time overlap, some writes of unknown outcome that land late or never) from a real
sequential register, so every one is linearizable, checks them, and prints operations checked
per second. One corrupted history is timed too, since explaining a failure costs extra.
Then the same for histories with ranges and 2-key compare-and-swap transactions over the same
keys, which are checked on the whole key space at once instead of key by key.

    PYTHONSAFEPATH=1 .venv/bin/python bench/checker_bench.py [--ops 500] [--histories 50]
"""

from __future__ import annotations

import argparse
import random
import time

from keychain.testing.checker import check
from keychain.testing.history import Compare, Operation, TxnOp


def generate(rng: random.Random, *, ops: int, clients: int, keys: int, unknown: float) -> list[Operation]:
    """A linearizable history: each op takes effect at a random instant inside its interval."""
    clock = [0.0] * clients
    planned: list[tuple[float, int, dict]] = []  # (effect time or inf, n, fields)
    for n in range(ops):
        client = rng.randrange(clients)
        start = clock[client] + rng.uniform(0.0, 0.002)
        end = start + rng.uniform(0.001, 0.02)
        clock[client] = end
        kind = rng.choices(["put", "get", "delete"], weights=[4, 5, 1])[0]
        fields = {
            "client": f"c{client}",
            "op": kind,
            "key": f"k{rng.randrange(keys)}",
            "value": f"v{n}" if kind == "put" else None,
            "start": start,
            "end": end,
            "status": "ok",
            "output": None,
        }
        effect = rng.uniform(start, end)
        if kind != "get" and rng.random() < unknown:
            fields["end"], fields["status"] = None, "unknown"
            effect = start + rng.uniform(0.0, 0.1) if rng.random() < 0.5 else float("inf")
        planned.append((effect, n, fields))
    register: dict[str, str | None] = {}
    for effect, _n, fields in sorted(planned, key=lambda p: (p[0], p[1])):
        if effect == float("inf"):
            continue
        if fields["op"] == "put":
            register[fields["key"]] = fields["value"]
        elif fields["op"] == "delete":
            register[fields["key"]] = None
        else:
            fields["output"] = register.get(fields["key"])
    return [Operation(**fields) for _e, _n, fields in sorted(planned, key=lambda p: p[1])]


def generate_multikey(
    rng: random.Random, *, ops: int, clients: int, keys: int, unknown: float
) -> list[Operation]:
    """A linearizable history of puts, gets, ranges over every key and 2-key compare-and-swaps."""
    names = [f"k{i}" for i in range(keys)]
    clock = [0.0] * clients
    planned: list[tuple[float, int, dict]] = []
    for n in range(ops):
        client = rng.randrange(clients)
        start = clock[client] + rng.uniform(0.0, 0.002)
        end = start + rng.uniform(0.001, 0.02)
        clock[client] = end
        kind = rng.choices(["put", "get", "range", "txn"], weights=[3, 3, 2, 2])[0]
        effect = rng.uniform(start, end)
        fields: dict = {
            "client": f"c{client}",
            "op": kind,
            "key": "",
            "value": None,
            "start": start,
            "end": end,
            "status": "ok",
        }
        if kind in ("put", "get"):
            fields["key"] = rng.choice(names)
            fields["value"] = f"v{n}" if kind == "put" else None
        elif kind == "txn":
            fields["pair"] = rng.sample(names, 2)
        # Only puts have unknown outcomes here: a transaction of unknown outcome may take either
        # branch wherever it lands and the search does not prune those yet (1% of them already
        # costs hundreds of steps per operation).
        if kind == "put" and rng.random() < unknown:
            fields["end"], fields["status"] = None, "unknown"
            effect = start + rng.uniform(0.0, 0.1) if rng.random() < 0.5 else float("inf")
        planned.append((effect, n, fields))
    store: dict[str, str] = {}
    for effect, n, fields in sorted(planned, key=lambda p: (p[0], p[1])):
        kind = fields["op"]
        if kind == "put":
            if effect != float("inf"):
                store[fields["key"]] = fields["value"]
        elif kind == "get":
            fields["output"] = store.get(fields["key"])
        elif kind == "range":
            fields["items"] = tuple((k, store[k]) for k in sorted(store))
        else:
            first, second = fields.pop("pair")
            expect = store.get(first) if rng.random() < 0.7 else "stale"
            holds = store.get(first) == expect
            fields["compare"] = (Compare(first, expect),)
            fields["success"] = (TxnOp("put", first, f"v{n}"), TxnOp("put", second, f"w{n}"))
            fields["failure"] = (TxnOp("get", second),)
            if fields["status"] == "ok":
                fields["succeeded"] = holds
                fields["results"] = (None, None) if holds else (store.get(second),)
            if holds and effect != float("inf"):
                store[first], store[second] = f"v{n}", f"w{n}"
    return [Operation(**fields) for _e, _n, fields in sorted(planned, key=lambda p: p[1])]


def _timed(label: str, histories: list[list[Operation]], args: argparse.Namespace) -> list[Operation]:
    began = time.perf_counter()
    steps = 0
    for history in histories:
        result = check(history)
        assert result.ok, result.message
        steps += result.steps
    elapsed = time.perf_counter() - began
    total = args.ops * len(histories)
    print(
        f"{label}: {len(histories)} histories x {args.ops} ops, {args.clients} clients, "
        f"{args.keys} keys: {total / elapsed:,.0f} ops/s ({elapsed / len(histories) * 1000:.1f} ms "
        f"per history, {steps / total:.2f} search steps per op)"
    )
    return histories[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--histories", type=int, default=50)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--unknown", type=float, default=0.1, help="fraction of writes with unknown outcome")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    histories = [
        generate(rng, ops=args.ops, clients=args.clients, keys=args.keys, unknown=args.unknown)
        for _ in range(args.histories)
    ]
    _timed("linearizable", histories, args)

    broken = list(histories[0])
    last_read = max(i for i, op in enumerate(broken) if op.op == "get" and op.status == "ok")
    op = broken[last_read]
    broken[last_read] = Operation(op.client, "get", op.key, None, op.start, op.end, "ok", "never-written")
    began = time.perf_counter()
    result = check(broken)
    elapsed = time.perf_counter() - began
    assert not result.ok
    print(f"corrupted: rejected in {elapsed * 1000:.1f} ms with a window of {len(result.window)} ops")

    multikey = [
        generate_multikey(rng, ops=args.ops, clients=args.clients, keys=args.keys, unknown=args.unknown)
        for _ in range(args.histories)
    ]
    first = _timed("multi-key (ranges, 2-key CAS txns)", multikey, args)
    # The last range returns the first value its last key ever had: a stale read the search must refute.
    broken = list(first)
    last_range = max(i for i, op in enumerate(broken) if op.op == "range" and op.items)
    op = broken[last_range]
    key = op.items[-1][0]
    stale = next(o.value for o in broken if o.op == "put" and o.key == key and o.value != op.items[-1][1])
    broken[last_range] = Operation(**{**_fields(op), "items": (*op.items[:-1], (key, stale))})
    began = time.perf_counter()
    result = check(broken)
    elapsed = time.perf_counter() - began
    assert not result.ok
    print(
        f"multi-key corrupted: rejected in {elapsed * 1000:.1f} ms with a window of {len(result.window)} ops"
    )


def _fields(op: Operation) -> dict:
    return {name: getattr(op, name) for name in Operation.__slots__}


if __name__ == "__main__":
    main()
