"""The per-member CPU caps of the benchmarks: which cgroup hierarchy they pick, the quota they write,
and the clear refusal when a machine has no cpu controller (the cgroups themselves need root and are
exercised by running the benchmarks with --member-cpu)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "bench" / "member_cpu.py"
spec = importlib.util.spec_from_file_location("bench_member_cpu", MODULE)
assert spec and spec.loader
member_cpu = importlib.util.module_from_spec(spec)
sys.modules["bench_member_cpu"] = member_cpu  # dataclasses look their module up by name
spec.loader.exec_module(member_cpu)

V1_SEPARATE = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
V1_COMOUNTED = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n"
V2_ONLY = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"


def test_cgroup_v1_is_used_with_usage_read_from_cpuacct_wherever_it_is_mounted():
    h = member_cpu.find_hierarchy(V1_SEPARATE, v2_controllers="hugetlb")
    assert (h.version, h.cpu_root, h.acct_root) == (1, Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpuacct"))
    h = member_cpu.find_hierarchy(V1_COMOUNTED, v2_controllers=None)
    assert h.version == 1 and h.cpu_root == h.acct_root == Path("/sys/fs/cgroup/cpu,cpuacct")


def test_cgroup_v2_is_used_only_when_its_cpu_controller_is_available():
    h = member_cpu.find_hierarchy(V2_ONLY, v2_controllers="cpuset cpu io memory pids\n")
    assert (h.version, h.cpu_root, h.acct_root) == (2, Path("/sys/fs/cgroup"), None)
    with pytest.raises(member_cpu.MemberCpuError, match="no cpu controller"):
        member_cpu.find_hierarchy(V2_ONLY, v2_controllers="memory pids")
    with pytest.raises(member_cpu.MemberCpuError, match="neither v1 nor v2"):
        member_cpu.find_hierarchy("proc /proc proc rw 0 0\n", v2_controllers=None)


def test_the_quota_is_the_cpus_share_of_each_period_and_too_small_a_cap_is_refused():
    assert member_cpu.quota_us(0.25) == 25_000
    assert member_cpu.quota_us(1.5) == 150_000
    assert member_cpu.v2_cpu_max(0.2) == "20000 100000"
    for cpus in (0.0, -1.0, 0.005):
        with pytest.raises(member_cpu.MemberCpuError):
            member_cpu.quota_us(cpus)


def test_capped_periods_are_the_share_of_periods_that_ran_out_of_quota():
    assert member_cpu.throttled_share((100, 10), (300, 160)) == 0.75
    assert member_cpu.throttled_share((5, 0), (5, 0)) == 0.0, "a group that never ran was never capped"


def test_members_of_a_local_cluster_are_its_live_components():
    doc = {"components": [{"name": "coordinator-1", "kind": "coordinator", "pid": 11},
                          {"name": "node-1", "kind": "node", "pid": 12},
                          {"name": "proxy", "kind": "proxy", "pid": None}]}
    assert member_cpu.member_pids(doc) == {"coordinator-1": 11, "node-1": 12}


def usable_here() -> bool:
    try:
        member_cpu.detect()
    except member_cpu.MemberCpuError:
        return False
    return True


@pytest.mark.skipif(not usable_here(), reason="needs root and a cgroup cpu controller")
def test_a_member_is_capped_in_its_own_group_and_every_group_is_removed_afterwards():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with member_cpu.MemberCgroups(0.25, tag="keychain-test") as groups:
            groups.add("sleeper", [child.pid])
            group = groups.groups["sleeper"]
            assert str(child.pid) in (group.cpu_dir / "cgroup.procs").read_text().split()
            if groups.hierarchy.version == 1:
                assert (group.cpu_dir / "cpu.cfs_quota_us").read_text().strip() == "25000"
            else:
                assert (group.cpu_dir / "cpu.max").read_text().split()[0] == "25000"
            assert groups.usage_seconds()["sleeper"] < 1.0, "a sleeping process uses next to no CPU"
            made = [groups.cpu_parent, group.cpu_dir, *([group.acct_dir] if group.acct_dir else [])]
        assert not any(path.exists() for path in made), "the groups are gone though the process still runs"
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
