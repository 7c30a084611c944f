"""What one request and its reply cost in grpc.aio: as a unary call, and as two messages on an open
bidirectional stream (the shape of the proxy's ReadStream to each node).

    PYTHONSAFEPATH=1 .venv/bin/python bench/grpc_call_cost.py [--seconds 5] [--callers 8] [--size 2000] [--rounds 2]

It starts an echo server in a child process (the same event loop the nodes run) and, in this process,
`--callers` concurrent callers that each send a `--size`-byte request and wait for its reply, for
`--seconds` per mode, alternating the modes `--rounds` times. For each it prints requests per second
and the CPU microseconds per request of the caller and of the server (from /proc/<pid>/stat), and the
load average before and after: on a shared machine compare the modes within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import grpc

SERVICE = "bench.Echo"


def _same(data: bytes) -> bytes:
    return data


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def serve(port: int) -> None:
    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def stream(requests, context):  # type: ignore[no-untyped-def]
        async for request in requests:
            yield request

    server = grpc.aio.server()
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, request_deserializer=_same, response_serializer=_same),
        "Stream": grpc.stream_stream_rpc_method_handler(stream, request_deserializer=_same, response_serializer=_same),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def drive(port: int, mode: str, seconds: float, callers: int, size: int, server_pid: int) -> dict[str, float]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    unary = channel.unary_unary(f"/{SERVICE}/Unary", request_serializer=_same, response_deserializer=_same)
    payload = b"x" * size
    await unary(payload)  # connected before the clock starts
    done = 0
    end = time.monotonic() + seconds

    async def by_call() -> None:
        nonlocal done
        while time.monotonic() < end:
            await unary(payload)
            done += 1

    async def by_stream() -> None:
        nonlocal done
        call = channel.stream_stream(f"/{SERVICE}/Stream", request_serializer=_same, response_deserializer=_same)()
        while time.monotonic() < end:
            await call.write(payload)
            await call.read()
            done += 1
        await call.done_writing()

    caller = by_call if mode == "unary" else by_stream
    mine, theirs, started = time.process_time(), cpu_seconds(server_pid), time.monotonic()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.monotonic() - started
    mine, theirs = time.process_time() - mine, cpu_seconds(server_pid) - theirs
    await channel.close()
    return {"per_s": done / elapsed, "caller_us": mine / done * 1e6, "server_us": theirs / done * 1e6}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--callers", type=int, default=8)
    p.add_argument("--size", type=int, default=2000, help="request and reply bytes (a read batch of ~10 keys)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.serve:
        import uvloop  # the nodes' and the proxy's loop

        uvloop.run(serve(opts.serve))
        return 0
    if not 0 < opts.seconds <= 60 or not 0 < opts.rounds <= 10:
        p.error("--seconds is in (0, 60], --rounds in 1..10")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-P", __file__, "--serve", str(port)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise SystemExit("the echo server did not start")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        results: dict[str, list[dict[str, float]]] = {"unary": [], "stream": []}
        for _ in range(opts.rounds):
            for mode in results:
                results[mode].append(asyncio.run(drive(port, mode, opts.seconds, opts.callers, opts.size, server.pid)))
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
        print(f"{'mode':<8}{'requests/s':>12}{'caller us/req':>15}{'server us/req':>15}{'both':>8}")
        for mode, runs in results.items():
            for r in runs:
                both = r["caller_us"] + r["server_us"]
                print(f"{mode:<8}{r['per_s']:>12,.0f}{r['caller_us']:>15,.0f}{r['server_us']:>15,.0f}{both:>8,.0f}")
        print(json.dumps({"benchmark": "grpc-call-cost", "config": vars(opts) | {"serve": None}, "results": results}))
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
