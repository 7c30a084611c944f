"""The chaos tests' client: runs inside the client namespace and drives a real chain over gRPC.

    python -P chaos_client.py --coordinators A,B,C --chain main --history H.jsonl --acks A.json

Worker threads write (at the head named by the coordinator's GetChain) and read (at any active
member) a few keys, each operation recorded with `keychain.testing.history.Recorder` on the
system-wide monotonic clock, so the test process can line faults up with operations. A call
that times out or fails in transit is recorded as `unknown`; only a refusal that proves the write
was not applied (wrong epoch, not the head, lease expired) is a `fail`. As the proxy does, a write
still waiting on a node that the configuration no longer names the head is sent again, with the
same request id, to the new head (a refusal after that is `unknown`: the first may have applied).

Standard input takes one command a line, answered with one JSON line on standard output:
  topology  {"epoch", "members": [[id, state], ...], "head", "leader", "ok_writes"}
  stop      stops the workers, reads every key at every active member, writes the history and
            the acknowledged writes to their files; answers {"ops": n}
It prints {"ready": true} first, once the chain has its members and a write went through.

With --proxy, writes and the workers' reads go through a proxy's gRPC KV API instead, as an
application's would (a write the proxy did not acknowledge is `unknown`: the proxy may have sent
it); the topology is still read from the coordinators, and the final reads at every member.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc

from keychain.proto import (
    chain_pb2,
    chain_pb2_grpc,
    coordinator_pb2,
    coordinator_pb2_grpc,
    kv_pb2,
    kv_pb2_grpc,
)
from keychain.testing.history import Recorder, write_history

CHANNEL_OPTIONS = [
    # Reconnect quickly once a partition heals, instead of gRPC's default backoff of up to 2 min.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]
# Request-level refusals after which the write certainly was not applied.
PROXY_CALL_TIMEOUT = 6.0  # seconds: past the proxy's own request timeout (5 s), which answers first
REFUSED = {chain_pb2.WRONG_EPOCH, chain_pb2.NOT_HEAD, chain_pb2.LEASE_EXPIRED, chain_pb2.INVALID_ARGUMENT,
           chain_pb2.TOO_LARGE}


class Cluster:
    """gRPC channels and the last chain configuration seen."""

    def __init__(self, coordinators: list[str], chain: str, timeout: float, proxy: str = "") -> None:
        self.proxy = proxy  # a proxy's gRPC KV address: the workers' operations go through it
        self.coordinators = coordinators
        self.chain = chain
        self.timeout = timeout
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self.config: chain_pb2.ChainConfig | None = None
        self._fetched_at = 0.0
        self._answered = ""  # the coordinator that answered the last GetChain
        self._refreshing = threading.Lock()  # held by the one worker asking for the configuration

    def channel(self, address: str) -> grpc.Channel:
        with self._lock:
            if address not in self._channels:
                self._channels[address] = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
            return self._channels[address]

    def node(self, address: str) -> chain_pb2_grpc.ChainNodeStub:
        return chain_pb2_grpc.ChainNodeStub(self.channel(address))

    def kv(self) -> kv_pb2_grpc.KVStub:
        return kv_pb2_grpc.KVStub(self.channel(self.proxy))

    def coordinator(self, address: str) -> coordinator_pb2_grpc.CoordinatorStub:
        return coordinator_pb2_grpc.CoordinatorStub(self.channel(address))

    def refresh(self, force: bool = False) -> chain_pb2.ChainConfig | None:
        """The chain's configuration from any coordinator that answers (at most every 0.2 s)."""
        if not force and self.config is not None and time.monotonic() - self._fetched_at < 0.2:
            return self.config
        # One worker asks while the others go on with the configuration they have: a coordinator
        # that is paused or cut off would otherwise hold every worker's next write for a whole
        # timeout, a write gap of the client's own making. The one that answered last goes first.
        if not self._refreshing.acquire(blocking=force or self.config is None):
            return self.config
        try:
            others = [a for a in self.coordinators if a != self._answered]
            order = ([self._answered] if self._answered else []) + random.sample(others, len(others))
            for address in order:
                try:
                    reply = self.coordinator(address).GetChain(
                        coordinator_pb2.GetChainRequest(chain=self.chain), timeout=self.timeout)
                except grpc.RpcError:
                    self._answered = "" if address == self._answered else self._answered
                    continue
                if reply.error.code == coordinator_pb2.OK:
                    self.config, self._fetched_at, self._answered = reply.config, time.monotonic(), address
                    return self.config
            return self.config
        finally:
            self._refreshing.release()

    def leader(self) -> str:
        votes: Counter[str] = Counter()
        for address in self.coordinators:
            try:
                status = self.coordinator(address).GetClusterStatus(
                    coordinator_pb2.ClusterStatusRequest(), timeout=self.timeout)
            except grpc.RpcError:
                continue
            if status.leader:
                votes[status.leader] += 1
        return votes.most_common(1)[0][0] if votes else ""


def active(config: chain_pb2.ChainConfig | None) -> list[chain_pb2.Member]:
    return [m for m in config.members if m.state == chain_pb2.ACTIVE] if config else []


class Workload:
    def __init__(self, cluster: Cluster, keys: list[str], seed: int, pause: float, max_ops: int) -> None:
        self.cluster = cluster
        self.keys = keys
        self.recorder = Recorder()
        self.rng_seed = seed
        self.pause = pause
        self.max_ops = max_ops
        self.stop = threading.Event()
        self.acks: list[dict[str, object]] = []  # acknowledged writes: key, value, version, end
        self._lock = threading.Lock()
        self._ops = 0

    def _take_op(self) -> bool:
        with self._lock:
            self._ops += 1
            return self._ops <= self.max_ops

    def put(self, client: str, key: str, value: str) -> bool:
        if self.cluster.proxy:
            return self._put_via_proxy(client, key, value)
        config = self.cluster.refresh()
        members = active(config)
        if not members:
            return False
        call = self.recorder.invoke(client, "put", key, value, at=time.monotonic())
        op = chain_pb2.WriteOp(request_id=uuid.uuid4().hex, key=key.encode(), kind=chain_pb2.PUT,
                               value=value.encode())
        try:
            reply, abandoned = self._write(op, config, members[0].address)  # type: ignore[arg-type]
        except grpc.RpcError:
            self.recorder.unknown(call)
            self.cluster.refresh(force=True)
            return False
        now = time.monotonic()
        code = reply.error.code
        if code == chain_pb2.OK and reply.results and reply.results[0].error.code == chain_pb2.OK:
            self.recorder.ok(call, at=now)
            with self._lock:
                self.acks.append({"key": key, "value": value, "version": reply.results[0].version, "end": now})
            return True
        result_code = reply.results[0].error.code if code == chain_pb2.OK and reply.results else code
        if result_code in REFUSED and not abandoned:
            self.recorder.fail(call, at=now)
        else:
            self.recorder.unknown(call)
        self.cluster.refresh(force=True)
        return False

    def _put_via_proxy(self, client: str, key: str, value: str) -> bool:
        call = self.recorder.invoke(client, "put", key, value, at=time.monotonic())
        try:
            reply = self.cluster.kv().Put(kv_pb2.PutRequest(key=key.encode(), value=value.encode(),
                                                            request_id=uuid.uuid4().hex),
                                          timeout=PROXY_CALL_TIMEOUT)
        except grpc.RpcError:
            self.recorder.unknown(call)
            return False
        now = time.monotonic()
        if reply.error.code != chain_pb2.OK:
            self.recorder.unknown(call)  # the proxy may have sent it before giving up
            return False
        self.recorder.ok(call, at=now)
        with self._lock:
            self.acks.append({"key": key, "value": value, "version": reply.version, "end": now})
        return True

    def _get_via_proxy(self, client: str, key: str) -> None:
        call = self.recorder.invoke(client, "get", key, at=time.monotonic())
        try:
            reply = self.cluster.kv().Get(kv_pb2.GetRequest(key=key.encode(), consistency=chain_pb2.STRONG),
                                          timeout=PROXY_CALL_TIMEOUT)
        except grpc.RpcError:
            self.recorder.fail(call, at=time.monotonic())
            return
        now = time.monotonic()
        if reply.error.code == chain_pb2.OK:
            self.recorder.ok(call, at=now, output=reply.value.decode())
        elif reply.error.code == chain_pb2.NOT_FOUND:
            self.recorder.ok(call, at=now, output=None)
        else:
            self.recorder.fail(call, at=now)

    def _write(self, op: chain_pb2.WriteOp, config: chain_pb2.ChainConfig,
               head: str) -> tuple[chain_pb2.WriteReply, bool]:
        """Write `op` at `head`; as the proxy does, a write still waiting on a node that the
        configuration (polled as usual meanwhile) no longer names the head is abandoned and sent,
        with the same request id, to the new head. Returns the reply and whether an attempt was
        abandoned (it may have applied: a refusal after it proves nothing); raises grpc.RpcError."""
        abandoned = False
        while True:
            future = self.cluster.node(head).Write.future(
                chain_pb2.WriteRequest(epoch=config.epoch, ops=[op]), timeout=self.cluster.timeout)
            while True:
                try:
                    return future.result(timeout=0.05), abandoned
                except grpc.FutureTimeoutError:
                    pass
                newer = self.cluster.refresh()
                heads = active(newer)
                if newer is not None and newer.epoch > config.epoch and heads and heads[0].address != head:
                    future.cancel()
                    abandoned = True  # the first attempt may have applied it: a refusal now is no proof
                    config, head = newer, heads[0].address
                    break

    def get(self, client: str, key: str, address: str, epoch: int) -> tuple[str | None, int] | None:
        """A strong read at one member: (value or None, version), or None when it did not answer."""
        call = self.recorder.invoke(client, "get", key, at=time.monotonic())
        try:
            reply = self.cluster.node(address).Read(
                chain_pb2.ReadRequest(epoch=epoch, key=key.encode(), consistency=chain_pb2.STRONG),
                timeout=self.cluster.timeout)
        except grpc.RpcError:
            self.recorder.fail(call, at=time.monotonic())  # a read that never returned has no effect
            return None
        now = time.monotonic()
        if reply.error.code == chain_pb2.OK:
            self.recorder.ok(call, at=now, output=reply.value.decode())
            return reply.value.decode(), reply.version
        if reply.error.code == chain_pb2.NOT_FOUND:
            self.recorder.ok(call, at=now, output=None)
            return None, 0
        self.recorder.fail(call, at=now)
        self.cluster.refresh(force=True)
        return None

    def worker(self, index: int) -> None:
        rng = random.Random(self.rng_seed * 100 + index)
        client = f"w{index}"
        n = 0
        while not self.stop.is_set() and self._take_op():
            key = rng.choice(self.keys)
            if rng.random() < 0.5:
                n += 1
                self.put(client, key, f"{client}-{n}")
            elif self.cluster.proxy:
                self._get_via_proxy(client, key)
            else:
                members = active(self.cluster.refresh())
                if members:
                    m = rng.choice(members)
                    self.get(client, key, m.address, self.cluster.config.epoch)  # type: ignore[union-attr]
            self.stop.wait(self.pause)

    def final_reads(self) -> list[dict[str, object]]:
        config = self.cluster.refresh(force=True)
        reads = []
        for key in self.keys:
            for m in active(config):
                for _attempt in range(5):  # a member may be busy for a moment right after a heal
                    start = time.monotonic()
                    got = self.get("final", key, m.address, config.epoch)  # type: ignore[union-attr]
                    if got is not None:
                        break
                    time.sleep(0.2)
                reads.append({"key": key, "member": m.id, "start": start,
                              "value": None if got is None else got[0],
                              "version": None if got is None else got[1]})
        return reads


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--coordinators", required=True)
    p.add_argument("--chain", default="main")
    p.add_argument("--members", type=int, default=3, help="active members to wait for before starting")
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--key-prefix", default="k", help="keys are <prefix>0, <prefix>1, ...: a fresh prefix "
                   "gives a fresh history on a cluster that already holds another run's keys")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--pause", type=float, default=0.03, help="seconds between one worker's operations")
    p.add_argument("--max-ops", type=int, default=4000)
    p.add_argument("--timeout", type=float, default=1.0, help="seconds per RPC")
    p.add_argument("--ready-timeout", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--history", type=Path, required=True)
    p.add_argument("--acks", type=Path, required=True)
    p.add_argument("--proxy", default="", help="a proxy's gRPC KV address: operations go through it")
    args = p.parse_args(argv)

    cluster = Cluster(args.coordinators.split(","), args.chain, args.timeout, args.proxy)
    keys = [f"{args.key_prefix}{i}" for i in range(args.keys)]
    workload = Workload(cluster, keys, args.seed, args.pause, args.max_ops)

    def say(obj: object) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    deadline = time.monotonic() + args.ready_timeout
    while time.monotonic() < deadline:
        if len(active(cluster.refresh(force=True))) >= args.members and workload.put("setup", keys[0], "setup"):
            break
        time.sleep(0.2)
    else:
        say({"ready": False, "config": str(cluster.config)})
        return 1
    say({"ready": True})
    threads = [threading.Thread(target=workload.worker, args=(i,), daemon=True) for i in range(args.workers)]
    for t in threads:
        t.start()
    for line in sys.stdin:
        command = line.strip()
        if command == "topology":
            config = cluster.refresh(force=True)
            members = [[m.id, chain_pb2.MemberState.Name(m.state)] for m in config.members] if config else []
            heads = active(config)
            say({"epoch": config.epoch if config else 0, "members": members,
                 "head": heads[0].id if heads else "", "leader": cluster.leader(),
                 "ok_writes": len(workload.acks)})
        elif command == "stop":
            workload.stop.set()
            for t in threads:
                t.join(timeout=2 * args.timeout + 1)
            reads = workload.final_reads()
            write_history(workload.recorder.history(), args.history)
            args.acks.write_text(json.dumps({"acks": workload.acks, "final_reads": reads}))
            say({"ops": len(workload.recorder.history())})
            return 0
        else:
            say({"error": f"unknown command {command!r}"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
