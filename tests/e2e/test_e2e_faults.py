"""End to end through `keychain up`: `kill -9` of components under load, and stop/start.

Each test starts its own cluster (it breaks things), plain and with `keychain up --tls`, runs a
bounded write and read load,
checks that no acknowledged write was lost and that the whole recorded history is
linearizable, and that the supervisor brought the killed component back.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from e2e_cluster import (
    Load,
    LocalCluster,
    RecordedClient,
    VersionedRecorder,
    active_members,
    assert_linearizable,
    lost_writes,
    member,
    pid_alive,
    read_back,
    running_cluster,
    wait_active,
    wait_for,
)

from keychain.client import Client
from keychain.testing.history import Recorder

pytestmark = [pytest.mark.process, pytest.mark.slow, pytest.mark.timeout(240)]

REJOIN_TIMEOUT = 60.0  # restart delay + process start + registration + catch-up + promotion


def assert_history_is_linearizable(recorder: Recorder, tmp_path: Path) -> None:
    assert_linearizable(recorder, tmp_path / "history.jsonl")


def wait_until_acked(load: Load, count: int, timeout: float = 30.0) -> None:
    wait_for(f"{count} acknowledged writes (errors so far: {load.errors[-3:]})",
             lambda: load.acked() >= count, timeout, interval=0.05)


def assert_no_lost_writes(recorder: Recorder, final: dict[str, str | None], cluster: LocalCluster) -> None:
    problems = lost_writes(recorder.history(), final)
    assert not problems, "\n".join(problems) + "\n" + cluster.report()


def unsettled(recorder: Recorder, key: str) -> bool:
    """Whether a write of `key` has an unknown outcome (it may still land later)."""
    return any(op.key == key and op.is_write and op.status == "unknown" for op in recorder.history())


def role_of(client: Client, node_id: str) -> str | None:
    found = member(client.cluster(), node_id)
    return found["role"] if found else None


@pytest.mark.parametrize(
    ("victim_role", "tls"), [("tail", False), ("head", True)], ids=["tail", "head-tls"]
)
def test_kill_9_of_a_node_loses_no_acknowledged_write_and_the_node_rejoins(
    tmp_path: Path, victim_role: str, tls: bool
) -> None:
    recorder = VersionedRecorder()
    with running_cluster(tmp_path / "data", tls=tls) as cluster, cluster.client() as admin:
        report = wait_active(admin)
        victim = next(m["id"] for m in active_members(report) if m["role"] == victim_role)

        load = Load(cluster.url, recorder, prefix=f"kill-{victim_role}", max_seconds=60,
                    client_options=cluster.client_options()).start()
        try:
            wait_until_acked(load, 50)
            old_pid = cluster.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            # Writes go on without the victim (the chain is reconfigured around it).
            wait_for("writes acknowledged after the kill", lambda: load.acked_after(killed_at + 0.1) >= 20, 30,
                     interval=0.05)
            new_pid = cluster.wait_restarted(victim, old_pid)
            assert not pid_alive(old_pid)
            # The restarted node rejoins (syncing, then promoted), all under load.
            wait_for(f"{victim} back in the chain as an active member",
                     lambda: role_of(admin, victim) in ("head", "middle", "tail"), REJOIN_TIMEOUT)
            assert cluster.pid(victim) == new_pid
        finally:
            load.stop()

        final = read_back(cluster.url, recorder, load.all_keys, **cluster.client_options())
        assert_no_lost_writes(recorder, final, cluster)

        # The rejoined node serves reads again: reads are spread over every active member.
        before = member(admin.cluster(), victim)["reads"]
        reader = RecordedClient(cluster.url, recorder, "after", timeout=5.0, **cluster.client_options())
        try:
            for key in load.all_keys * 4:
                assert reader.get(key) == final[key] or unsettled(recorder, key)
        finally:
            reader.close()
        # The figure reaches /v1/cluster with the node's next heartbeat to the coordinator.
        wait_for(f"{victim}'s served reads counted", lambda: member(admin.cluster(), victim)["reads"] > before, 5)
    assert_history_is_linearizable(recorder, tmp_path)


def test_kill_9_of_the_proxy_is_restarted_and_serves(tmp_path: Path) -> None:
    # Plaintext only: a proxy restarted under mutual TLS is covered by the stop-and-start scenario
    # below, which restarts every process of a TLS cluster on its data dir.
    recorder = VersionedRecorder()
    with running_cluster(tmp_path / "data") as cluster:
        load = Load(cluster.url, recorder, prefix="kill-proxy", writers=2, max_seconds=45,
                    client_options=cluster.client_options()).start()
        try:
            wait_until_acked(load, 30)
            old_pid = cluster.kill("proxy", signal.SIGKILL)
            killed_at = time.monotonic()
            cluster.wait_restarted("proxy", old_pid)
            wait_for("writes acknowledged through the restarted proxy",
                     lambda: load.acked_after(killed_at) >= 20, 30, interval=0.05)
        finally:
            load.stop()
        final = read_back(cluster.url, recorder, load.all_keys, **cluster.client_options())
        assert_no_lost_writes(recorder, final, cluster)
        assert any("proxy" in line and "restart" in line for line in cluster.output), cluster.output
    assert_history_is_linearizable(recorder, tmp_path)


def test_kill_9_of_the_coordinator_leader_does_not_interrupt_the_chain(tmp_path: Path) -> None:
    # Plaintext only: Raft and heartbeats over mutual TLS after a restart are the stop-and-start
    # scenario's, and a node rejoining under mutual TLS is the head-tls kill above.
    recorder = VersionedRecorder()
    with running_cluster(tmp_path / "data") as cluster, cluster.client() as admin:
        wait_active(admin)
        leader = wait_for("a coordinator leader", lambda: admin.cluster()["coordinator"]["leader"], 20)
        load = Load(cluster.url, recorder, prefix="kill-leader", writers=2, max_seconds=45,
                    client_options=cluster.client_options()).start()
        try:
            wait_until_acked(load, 30)
            old_pid = cluster.kill(leader, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for("a new coordinator leader",
                     lambda: admin.cluster()["coordinator"]["leader"] not in (None, leader), 20)
            wait_for("writes acknowledged after the leader died",
                     lambda: load.acked_after(killed_at) >= 20, 30, interval=0.05)
            cluster.wait_restarted(leader, old_pid)
        finally:
            load.stop()
        # Leases outlast an election: no node was dropped from the chain.
        assert len(active_members(admin.cluster())) == 3, admin.cluster()
        final = read_back(cluster.url, recorder, load.all_keys, **cluster.client_options())
        assert_no_lost_writes(recorder, final, cluster)
    assert_history_is_linearizable(recorder, tmp_path)


# Under mutual TLS only: the plaintext restart is the same code path without the certificates.
@pytest.mark.parametrize("tls", [True], ids=["tls"])
def test_stop_and_start_on_the_same_data_dir_keeps_every_acknowledged_write_and_grows(
    tmp_path: Path, tls: bool
) -> None:
    recorder = VersionedRecorder()
    data = tmp_path / "data"
    cluster = LocalCluster.start(data, tls=tls)
    options = cluster.client_options()
    try:
        load = Load(cluster.url, recorder, prefix="restart", writers=3, keys_per_writer=10,
                    max_ops_per_thread=60, max_seconds=30, client_options=options).start()
        deleter = RecordedClient(cluster.url, recorder, "d", **options)
        deleted = [f"restart-deleted-{i}" for i in range(5)]
        for key in deleted:
            deleter.put(key, "soon gone")
            deleter.delete(key)
        deleter.close()
        load.stop(timeout=40)
        assert load.acked() > 0, load.errors
        pids = [c["pid"] for c in cluster.cluster_json()["components"]]
    finally:
        code = cluster.stop()
    assert code == 0, cluster.report()
    assert any("stopped" in line for line in cluster.output), cluster.output
    assert not [pid for pid in pids if pid_alive(pid)], "children outlived keychain up"

    # No ports given (nor --tls): `keychain up` resumes the data on the addresses of the first run,
    # with the same certificates, and a fourth node joins the existing chain (state transfer, then
    # promotion to tail).
    with running_cluster(data, same_ports=True, extra_args=("--nodes", "4")) as again, \
            again.client() as admin:
        assert again.url == cluster.url
        assert again.client_options() == options
        final = read_back(again.url, recorder, load.all_keys + deleted, **options)
        assert_no_lost_writes(recorder, final, again)
        assert all(final[key] is None for key in deleted), final

        wait_active(admin, count=4)
        before = member(admin.cluster(), "node-4")["reads"]
        reader = RecordedClient(again.url, recorder, "after", **options)
        try:
            for key in (load.all_keys + deleted) * 2:
                assert reader.get(key) == final[key]
        finally:
            reader.close()
        assert member(admin.cluster(), "node-4")["reads"] > before
    assert_history_is_linearizable(recorder, tmp_path)
