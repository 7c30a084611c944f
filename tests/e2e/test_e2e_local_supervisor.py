"""`keychain up` itself: where it puts things, what it keeps between runs, how it refuses and dies."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_cluster import cmdline, pick_ports, pid_alive, wait_for

from keychain.local import Layout, main, parse_args, previous_layout, resolve_layout


def layout_for(argv: list[str], data_dir: Path) -> Layout:
    return resolve_layout(parse_args(argv), data_dir, previous_layout(data_dir))


def write_previous(data_dir: Path, **layout: object) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "cluster.json").write_text(json.dumps({"proxy": "x", "components": [], "layout": layout}))


def test_a_fresh_data_dir_gets_the_documented_defaults(tmp_path: Path) -> None:
    layout = layout_for([], tmp_path)
    assert (layout.nodes, layout.coordinators, layout.chain) == (3, 3, "main")
    assert (layout.http_port, layout.grpc_port, layout.base_port) == (8080, 8081, 7000)
    assert layout.node_port(1) == 7101 and layout.coordinator_port(3) == 7003


def test_a_second_run_keeps_the_ports_and_sizes_of_the_first(tmp_path: Path) -> None:
    first = layout_for(["--http-port", "9100", "--base-port", "12000", "--nodes", "4"], tmp_path)
    write_previous(tmp_path, **first.pinned())
    again = layout_for([], tmp_path)
    assert again.pinned() == first.pinned()
    assert (again.http_port, again.grpc_port, again.base_port, again.nodes) == (9100, 9101, 12000, 4)


def test_options_given_again_win_and_a_new_http_port_moves_the_grpc_port(tmp_path: Path) -> None:
    write_previous(tmp_path, nodes=3, coordinators=3, http_port=9100, grpc_port=9101, base_port=12000, chain="main")
    moved = layout_for(["--http-port", "9200"], tmp_path)
    assert (moved.http_port, moved.grpc_port, moved.base_port) == (9200, 9201, 12000)


def test_changing_the_coordinators_of_an_existing_data_dir_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_previous(tmp_path, nodes=3, coordinators=3, http_port=9100, grpc_port=9101, base_port=12000, chain="main")
    assert main(["--data-dir", str(tmp_path), "--coordinators", "5"]) == 2
    assert "coordinators=3" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_moving_the_base_port_of_an_existing_data_dir_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The coordinators' Raft address book and the chain's member addresses hold base-port addresses.
    write_previous(tmp_path, nodes=3, coordinators=3, http_port=9100, grpc_port=9101, base_port=12000, chain="main")
    assert main(["--data-dir", str(tmp_path), "--base-port", "13000"]) == 2
    assert "base_port=12000" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_busy_ports_are_named_and_nothing_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, http = pick_ports(random.Random(7))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", http))
        taken.listen()
        code = main(["--data-dir", str(tmp_path), "--http-port", str(http), "--base-port", str(base)])
    assert code == 1
    assert str(http) in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("argv", [["--nodes", "0"], ["--http-port", "70000"], ["--chain", " "]])
def test_bad_options_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2


@pytest.mark.process
@pytest.mark.timeout(90)
def test_children_do_not_outlive_a_supervisor_killed_with_sigkill(tmp_path: Path) -> None:
    base, http = pick_ports(random.Random(os.getpid()))
    data = tmp_path / "data"
    supervisor = subprocess.Popen(
        [sys.executable, "-P", "-m", "keychain", "up", "--data-dir", str(data), "--base-port", str(base),
         "--http-port", str(http), "--ready-timeout", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        def all_started() -> list[int] | None:
            doc = json.loads((data / "cluster.json").read_text())
            pids = [c["pid"] for c in doc["components"]]
            return pids if all(pids) and len(pids) == 7 else None

        pids = wait_for("every child started", all_started, 30, interval=0.05)
    finally:
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait()
    try:
        wait_for("every child to exit after the supervisor was killed",
                 lambda: not any(pid_alive(pid) for pid in pids), 20)
    finally:
        for pid in pids:
            if pid_alive(pid) and any("keychain" in part for part in cmdline(pid)):
                os.kill(pid, signal.SIGKILL)
