"""How fast the linearizability checker gets through a realistic history.

Generates histories the way the simulator produces them (several clients, a few keys, heavy
real-time overlap, some writes of unknown outcome that land late or never) from a real
sequential register, so every one is linearizable, checks them, and prints operations checked
per second. One corrupted history is timed too, since explaining a failure costs extra.

    PYTHONSAFEPATH=1 .venv/bin/python bench/checker_bench.py [--ops 500] [--histories 50]
"""

from __future__ import annotations

import argparse
import random
import time

from keychain.testing.checker import check
from keychain.testing.history import Operation


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
    began = time.perf_counter()
    steps = 0
    for history in histories:
        result = check(history)
        assert result.ok, result.message
        steps += result.steps
    elapsed = time.perf_counter() - began
    total = args.ops * args.histories
    print(
        f"linearizable: {args.histories} histories x {args.ops} ops, {args.clients} clients, "
        f"{args.keys} keys: {total / elapsed:,.0f} ops/s ({elapsed / args.histories * 1000:.1f} ms "
        f"per history, {steps / total:.2f} search steps per op)"
    )

    broken = list(histories[0])
    last_read = max(i for i, op in enumerate(broken) if op.op == "get" and op.status == "ok")
    op = broken[last_read]
    broken[last_read] = Operation(op.client, "get", op.key, None, op.start, op.end, "ok", "never-written")
    began = time.perf_counter()
    result = check(broken)
    elapsed = time.perf_counter() - began
    assert not result.ok
    print(f"corrupted: rejected in {elapsed * 1000:.1f} ms with a window of {len(result.window)} ops")


if __name__ == "__main__":
    main()
