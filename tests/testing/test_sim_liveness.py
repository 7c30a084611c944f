"""Liveness under a single fault (keychain.testing.sim_liveness): after one fault strikes one node or
coordinator, acknowledged writes resume within a bound, and once it heals the chain is whole again
within a bound; a chain whose coordinator cannot learn of a gray failure (no link reports) is caught.

Every case runs seed 0 with one fault kind and one role: its fault lasts 4.97 s, at least 0.5 s
past the bound on the write gap, so a fault nobody acts on cannot heal in time (found by trying
seeds from 0; each case asserts it). A run costs well under a second."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sim_broken_cores import NoLinkReportsShell
from sim_broken_supervisors import IgnoresLinkReports, NeverRemoves

from keychain.testing import sim
from keychain.testing.sim_cluster import SimConfig, first_failure, run_seed
from keychain.testing.sim_liveness import NODE_ROLES, _longest_gap, full_length, writes_resume
from keychain.testing.sim_world import Process, World

SEED = 0


def _single(kind: str, role: str) -> SimConfig:
    return SimConfig(liveness=(kind,), roles=(role,))


def _assert_live(kind: str, role: str) -> None:
    config = _single(kind, role)
    result = run_seed(SEED, config)
    stats = result.stats
    bound = writes_resume(kind, role)
    assert stats["fault"].startswith(f"{kind} {role} ") and stats["fault_seconds"] > bound + 0.5
    assert result.ok, sim.report_failure(result, config, trace_lines=20)
    assert stats["write_gap_during"] <= bound and stats["write_gap_after"] <= bound
    assert stats["full_length_after"] is not None and stats["full_length_after"] <= full_length(kind, role)


HANDLED = [
    # A chain node that goes silent to the coordinators: removed once its lease has certainly lapsed.
    ("crash", "head"), ("pause", "tail"), ("isolate", "middle"), ("one-way-out", "head"),
    # The coordinators elect another leader well within the nodes' leases.
    ("crash", "leader"), ("sync-stall", "leader"),
]


@pytest.mark.parametrize(("kind", "role"), HANDLED, ids=[f"{k}-{r}" for k, r in HANDLED])
def test_writes_resume_and_the_chain_heals_after_a_single_fault(kind, role):
    _assert_live(kind, role)


GRAY = [
    # A node that heartbeats but whose links fail, or whose syncs hang: removed on the link reports.
    ("one-way-in", "middle"), ("unreachable", "tail"), ("sync-stall", "head"), ("sync-stall", "tail"),
    # Nothing reaches the node, which cannot hear its lease revoked either: removed once its lease
    # lapsed, which it then surrenders with every heartbeat (no wait for a lease and a margin more).
    ("one-way-in", "tail"), ("one-way-in", "head"),
    # Nobody can connect to the head, whose own links work: only the clients can tell. Their requests
    # go unanswered, and so does the probe that follows (keychain.proxy.reachability).
    ("unreachable", "head"),
]


@pytest.mark.parametrize(("kind", "role"), GRAY, ids=[f"{k}-{r}" for k, r in GRAY])
def test_writes_resume_after_a_gray_failure_of_a_node(kind, role):
    _assert_live(kind, role)


def test_a_supervisor_that_never_removes_a_silent_node_is_caught():
    broken = SimConfig(liveness=("crash",), roles=NODE_ROLES, supervisor=NeverRemoves)
    found = first_failure(broken, range(5))
    assert found is not None and found.violation is not None, "no seed in 0..4 caught it"
    assert found.violation.prop == "liveness-writes-resume", found.violation
    assert run_seed(found.seed, SimConfig(liveness=("crash",), roles=NODE_ROLES)).ok


# A node's syncs hang while it keeps heartbeating: only its own link-health report ("stalled") can
# get it removed. Both variants were first caught at seed 1 (a 4.9 s stall of a middle node).
STALLS = SimConfig(liveness=("sync-stall",), roles=NODE_ROLES)
WITHOUT_LINK_REPORTS = [
    pytest.param({"node_shell": NoLinkReportsShell}, id="node-reports-no-links"),
    pytest.param({"supervisor": IgnoresLinkReports}, id="supervisor-ignores-link-reports"),
]


@pytest.mark.parametrize("broken", WITHOUT_LINK_REPORTS)
def test_the_chain_without_link_reports_is_caught_and_the_real_one_passes_the_same_seed(broken):
    found = first_failure(replace(STALLS, **broken), range(8))
    assert found is not None and found.violation is not None, "no seed in 0..7 caught it"
    assert found.violation.prop == "liveness-writes-resume", found.violation
    print(f"caught by seed {found.seed}: {found.violation}")
    result = run_seed(found.seed, STALLS)
    assert result.ok, sim.report_failure(result, STALLS, trace_lines=20)


def test_a_liveness_failure_names_the_fault_and_the_command_that_replays_it(capsys, monkeypatch):
    monkeypatch.setattr(sim, "run_seed", lambda seed, config: run_seed(seed, SimConfig(
        liveness=config.liveness, roles=config.roles, supervisor=NeverRemoves)))
    assert sim.main(["--replay", "0", "--liveness", "crash", "--roles", "head"]) == 1
    out = capsys.readouterr().out
    assert "FAIL seed 0: liveness-writes-resume" in out
    assert "crash of the head n" in out and f"beyond the bound of {writes_resume('crash', 'head'):.2f} s" in out
    assert out.rstrip().endswith("replay: python -P -m keychain.testing.sim --replay 0 --liveness crash --roles head")


def test_the_replay_command_of_a_liveness_run_names_its_kinds_and_roles():
    assert sim.replay_command(3, SimConfig(liveness=sim.SINGLE_FAULTS)) == (
        "python -P -m keychain.testing.sim --replay 3 --liveness all")
    assert sim.replay_command(3, SimConfig(liveness=("pause", "crash"))) == (
        "python -P -m keychain.testing.sim --replay 3 --liveness pause,crash")


@pytest.mark.parametrize("argv", [["--liveness", "meteor"], ["--liveness", ","], ["--liveness", "crash", "--roles", "x"],
                                  ["--liveness", "unreachable", "--roles", "leader"]])
def test_the_command_refuses_bad_liveness_options(argv, capsys):
    assert sim.main(argv) == 2
    assert "keychain.testing.sim:" in capsys.readouterr().err


def test_a_paused_process_does_nothing_until_it_resumes_then_what_fell_due_in_order():
    world = World(1)
    p = Process(world, "p")
    p.up, p.incarnation = True, 1
    seen: list[tuple[str, float]] = []
    p.timer(0.1, lambda: seen.append(("timer", world.now)))
    world.after(0.2, p._fire, 1, lambda: seen.append(("message", world.now)), ())
    p.pause()
    world.run(1.0)
    assert seen == []
    p.resume()
    world.run(1.0)
    assert seen == [("timer", 1.0), ("message", 1.0)]


def test_a_stalled_disk_holds_a_sync_until_the_stall_ends():
    world = World(1)
    p = Process(world, "p")
    p.stalled_until = 3.0
    assert p.sync_delay() == 3.0
    world.now = 3.0
    assert p.sync_delay() < 0.01


def test_the_longest_gap_counts_from_the_start_and_to_the_end():
    assert _longest_gap([0.5, 1.0, 1.2], 0.0, 2.0) == pytest.approx(0.8)
    assert _longest_gap([0.5, 2.5], 1.0, 2.0) == pytest.approx(1.0)
    assert _longest_gap([], 1.0, 1.5) == pytest.approx(0.5)


def test_a_liveness_campaign_sums_up_the_longest_write_gap_of_each_fault(capsys):
    assert sim.main(["--liveness", "crash", "--roles", "head", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 seeds, 0 failed" in out
    assert "longest write gap while each lasted" in out and "crash head " in out
