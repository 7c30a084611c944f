"""What one gRPC message costs in CPU with grpc.aio, server and client apart: the floor under a chain
node's CPU per batch, which sends and receives a few such messages per batch whatever it does.

    PYTHONSAFEPATH=1 .venv/bin/python bench/grpc_message_cost.py [--calls 3000] [--entries 5]

A grpc.aio server in a child process answers the chain's own RPCs with canned replies: `Write` (a
unary call carrying `--entries` 100-byte puts, as the proxy sends the head) and `Link` (a stream: a
Batch of `--entries` entries down, an Ack up, as between two nodes). The client makes `--calls`
calls of each kind in turn, one at a time, and prints the CPU microseconds each side spent per
call or per round trip (from getrusage of each process), and the rate. The load average is printed
before and after: on a shared machine, figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import time
from multiprocessing.queues import Queue

import grpc

from keychain.proto import chain_pb2, chain_pb2_grpc


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _CannedNode(chain_pb2_grpc.ChainNodeServicer):
    async def Write(self, request, context):  # type: ignore[no-untyped-def]
        return chain_pb2.WriteReply(results=[chain_pb2.WriteResult(version=1) for _ in request.ops])

    async def Link(self, request_iterator, context):  # type: ignore[no-untyped-def,override]
        async for m in request_iterator:
            yield chain_pb2.LinkUp(ack=chain_pb2.Ack(epoch=1, committed_seq=m.batch.committed_seq))


def serve(commands: Queue[str], answers: Queue[float]) -> None:
    """The server process: reports its port, then its CPU seconds whenever asked, until told to stop."""
    async def main() -> None:
        server = grpc.aio.server()
        chain_pb2_grpc.add_ChainNodeServicer_to_server(_CannedNode(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        answers.put(port)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, commands.get) == "cpu":
            answers.put(cpu_seconds())
        await server.stop(0)
    asyncio.run(main())


def link_batch(i: int, entries: int) -> chain_pb2.LinkDown:
    m = chain_pb2.LinkDown()
    m.batch.epoch, m.batch.committed_seq = 1, i
    for j in range(entries):
        m.batch.entries.add(seq=i * entries + j, request_id="r" * 40, key=b"bench-%08d" % j, kind=0, value=b"v" * 100)
    return m


async def measure(port: int, calls: int, entries: int, commands: Queue[str], answers: Queue[float]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = chain_pb2_grpc.ChainNodeStub(channel)
        request = chain_pb2.WriteRequest(epoch=1, ops=[
            chain_pb2.WriteOp(request_id="r" * 40, key=b"bench-%08d" % j, kind=chain_pb2.OpKind.PUT, value=b"v" * 100)
            for j in range(entries)])
        await stub.Write(request)  # the connection is up before anything is measured
        for kind in ("unary Write call", "Link round trip (a Batch down, an Ack up)"):
            commands.put("cpu")
            server_before, client_before, started = answers.get(), cpu_seconds(), time.perf_counter()
            if kind.startswith("unary"):
                for _ in range(calls):
                    await stub.Write(request)
            else:
                call = stub.Link()
                for i in range(calls):
                    await call.write(link_batch(i, entries))
                    await call.read()
                await call.done_writing()
            commands.put("cpu")
            server_cpu, client_cpu = answers.get() - server_before, cpu_seconds() - client_before
            elapsed = time.perf_counter() - started
            print(f"{kind:45s} server {1e6 * server_cpu / calls:5.0f} us  client {1e6 * client_cpu / calls:5.0f} us"
                  f"  CPU each; {calls / elapsed:,.0f}/s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=3000, help="calls (and round trips) of each kind")
    p.add_argument("--entries", type=int, default=5, help="writes per call, entries per batch")
    args = p.parse_args()
    print("load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    commands: Queue[str] = multiprocessing.Queue()
    answers: Queue[float] = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(commands, answers))
    server.start()
    try:
        asyncio.run(measure(int(answers.get(timeout=30)), args.calls, args.entries, commands, answers))
    finally:
        commands.put("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
