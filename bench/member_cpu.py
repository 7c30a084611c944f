"""One machine per member: each benchmarked process group in its own cgroup capped at C CPUs.

A benchmark on a small shared machine cannot show that reads scale with the members serving them:
every member shares the same cores. Capping each member at C CPUs with the kernel's CPU controller
makes each behave as if it had a small machine of its own, so adding members adds capacity.

- cgroup v1: the `cpu` controller's `cpu.cfs_quota_us` / `cpu.cfs_period_us`; the CPU used is read
  from the `cpuacct` controller's `cpuacct.usage` (mounted with `cpu` or on its own).
- cgroup v2: `cpu.max`; the CPU used is `usage_usec` in `cpu.stat`. The `cpu` controller must be
  listed in the hierarchy's `cgroup.controllers`.

Writing a process id to a group's `cgroup.procs` moves the whole process (all its threads); the
processes it starts later are born in the same group. Every group created is removed again on
`close()` (the context manager's exit, so also on an exception, Ctrl-C or SIGTERM, which becomes
SystemExit while groups exist), after moving any process still inside back to the hierarchy's root. The cgroup file interface is a handful of files: written
by hand, as no library in the project's dependencies covers it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PERIOD_US = 100_000  # the kernel's default CFS period
MIN_QUOTA_US = 1_000  # the kernel refuses a smaller quota
MOUNTS = Path("/proc/self/mounts")


class MemberCpuError(Exception):
    """Per-member CPU caps cannot be set up here; the message says why."""


@dataclass(frozen=True)
class Hierarchy:
    """Where the groups go: the cpu controller's mount and where their CPU usage is read."""

    version: int  # 1 or 2
    cpu_root: Path
    acct_root: Path | None  # v1: the cpuacct mount (may equal cpu_root); v2: None (cpu.stat has usage)


def quota_us(cpus: float, period_us: int = PERIOD_US) -> int:
    """The CFS quota per period that allows `cpus` CPUs (0.25 -> a quarter of each period)."""
    if not cpus > 0:
        raise MemberCpuError(f"a member's CPU cap must be above 0, got {cpus}")
    quota = round(cpus * period_us)
    if quota < MIN_QUOTA_US:
        raise MemberCpuError(f"{cpus} CPUs is a quota of {quota} us per {period_us} us period; "
                             f"the kernel needs at least {MIN_QUOTA_US} us")
    return quota


def v2_cpu_max(cpus: float, period_us: int = PERIOD_US) -> str:
    """The `cpu.max` line for `cpus` CPUs."""
    return f"{quota_us(cpus, period_us)} {period_us}"


def find_hierarchy(mounts: str, v2_controllers: str | None) -> Hierarchy:
    """The cgroup hierarchy to use, from /proc/self/mounts' text; v1 when its cpu controller is mounted.

    `v2_controllers` is the text of the v2 mount's `cgroup.controllers` (None when unreadable).
    """
    v1_cpu = v1_acct = v2 = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mountpoint, fstype, options = fields[1], fields[2], fields[3].split(",")
        if fstype == "cgroup":
            if "cpu" in options and v1_cpu is None:
                v1_cpu = Path(mountpoint)
            if "cpuacct" in options and v1_acct is None:
                v1_acct = Path(mountpoint)
        elif fstype == "cgroup2" and v2 is None:
            v2 = Path(mountpoint)
    if v1_cpu is not None:
        if v1_acct is None:
            raise MemberCpuError(f"cgroup v1 cpu controller at {v1_cpu} but no cpuacct controller mounted: "
                                 "the CPU each member used could not be read")
        return Hierarchy(1, v1_cpu, v1_acct)
    if v2 is not None:
        if v2_controllers is None or "cpu" not in v2_controllers.split():
            raise MemberCpuError(f"cgroup v2 at {v2} has no cpu controller (cgroup.controllers: "
                                 f"{(v2_controllers or '').strip() or 'none'}), and no cgroup v1 cpu controller "
                                 "is mounted")
        return Hierarchy(2, v2, None)
    raise MemberCpuError("no cgroup filesystem with a cpu controller is mounted (neither v1 nor v2)")


def detect() -> Hierarchy:
    """The hierarchy of this machine; MemberCpuError when per-member caps cannot be set up here."""
    if os.geteuid() != 0:
        raise MemberCpuError("--member-cpu needs root: only root may create cgroups and move processes")
    mounts = MOUNTS.read_text()
    v2_controllers = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            with contextlib.suppress(OSError):
                v2_controllers = (Path(fields[1]) / "cgroup.controllers").read_text()
            break
    return find_hierarchy(mounts, v2_controllers)


@dataclass
class Group:
    name: str
    cpu_dir: Path
    acct_dir: Path | None
    pids: list[int] = field(default_factory=list)


class MemberCgroups:
    """One capped cgroup per member, all under one parent group named after this process.

    Use as a context manager: every group is removed on exit, whatever happened.
    """

    def __init__(self, cpus: float, hierarchy: Hierarchy | None = None, tag: str = "keychain-bench") -> None:
        self.cpus = cpus
        self.quota = quota_us(cpus)
        self.hierarchy = hierarchy or detect()
        self.groups: dict[str, Group] = {}
        parent = f"{tag}-{os.getpid()}"
        self.cpu_parent = self.hierarchy.cpu_root / parent
        acct = self.hierarchy.acct_root
        self.acct_parent = None if acct is None or acct == self.hierarchy.cpu_root else acct / parent
        self._made: list[Path] = []  # directories created, parents first
        self._previous_sigterm: Any = None

    def __enter__(self) -> MemberCgroups:
        # SIGTERM would end the process without unwinding, leaving the groups behind.
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir()
        except FileExistsError:
            pass
        except OSError as e:
            raise MemberCpuError(f"cannot create cgroup {path}: {e.strerror}") from e
        self._made.append(path)

    def _enable_v2_cpu(self, directory: Path) -> None:
        control = directory / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            try:
                control.write_text("+cpu")
            except OSError as e:
                raise MemberCpuError(f"cannot enable the cpu controller in {directory}: {e.strerror}") from e

    def add(self, name: str, pids: list[int]) -> None:
        """A group `name` capped at the CPUs given, holding these processes (and their future children)."""
        if name in self.groups:
            raise ValueError(f"group {name} exists")
        if not self._made:
            if self.hierarchy.version == 2:
                self._enable_v2_cpu(self.hierarchy.cpu_root)
            self._mkdir(self.cpu_parent)
            if self.hierarchy.version == 2:
                self._enable_v2_cpu(self.cpu_parent)
            if self.acct_parent is not None:
                self._mkdir(self.acct_parent)
        cpu_dir = self.cpu_parent / name
        self._mkdir(cpu_dir)
        acct_dir = None
        if self.hierarchy.version == 1:
            (cpu_dir / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (cpu_dir / "cpu.cfs_quota_us").write_text(str(self.quota))
            acct_dir = cpu_dir if self.acct_parent is None else self.acct_parent / name
            if acct_dir != cpu_dir:
                self._mkdir(acct_dir)
        else:
            (cpu_dir / "cpu.max").write_text(v2_cpu_max(self.cpus))
        group = Group(name, cpu_dir, acct_dir)
        self.groups[name] = group
        for pid in pids:
            self.move(group, pid)

    def move(self, group: Group, pid: int) -> None:
        for directory in {group.cpu_dir, group.acct_dir} - {None}:
            try:
                (directory / "cgroup.procs").write_text(str(pid))  # type: ignore[operator]
            except ProcessLookupError as e:
                raise MemberCpuError(f"process {pid} of {group.name} is gone") from e
        group.pids.append(pid)

    def usage_seconds(self) -> dict[str, float]:
        """CPU seconds each group has used since it was made."""
        out = {}
        for name, g in self.groups.items():
            if self.hierarchy.version == 1:
                assert g.acct_dir is not None
                out[name] = int((g.acct_dir / "cpuacct.usage").read_text()) / 1e9
            else:
                out[name] = stat_field(g.cpu_dir, "usage_usec") / 1e6
        return out

    def throttle_counts(self) -> dict[str, tuple[int, int]]:
        """Per group: (CFS periods with the group runnable, periods in which it ran out of quota)."""
        return {name: (stat_field(g.cpu_dir, "nr_periods"), stat_field(g.cpu_dir, "nr_throttled"))
                for name, g in self.groups.items()}

    def close(self) -> None:
        """Remove every group made, moving any process still in one back to the root first."""
        roots = {self.hierarchy.cpu_root, self.hierarchy.acct_root} - {None}
        for directory in reversed(self._made):
            for _ in range(50):  # a process may still be exiting: rmdir fails while it is listed
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    root = next(r for r in roots if directory.is_relative_to(r))  # type: ignore[arg-type]
                    evacuate(directory, root)
                    time.sleep(0.05)
        self._made.clear()
        self.groups.clear()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def stat_field(directory: Path, name: str) -> int:
    for line in (directory / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


def evacuate(directory: Path, root: Path) -> None:
    try:
        pids = (directory / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            (root / "cgroup.procs").write_text(pid)


class Usage:
    """CPU cores each group used between `start()` and `stop()`; the caps made visible."""

    def __init__(self, groups: MemberCgroups) -> None:
        self.groups = groups
        self.before: dict[str, float] = {}
        self.throttle_before: dict[str, tuple[int, int]] = {}
        self.started = 0.0
        self.cores: dict[str, float] = {}
        self.throttled_share: dict[str, float] = {}  # share of CFS periods that hit the cap

    def start(self) -> None:
        self.before = self.groups.usage_seconds()
        self.throttle_before = self.groups.throttle_counts()
        self.started = time.monotonic()

    def stop(self) -> dict[str, float]:
        seconds = time.monotonic() - self.started
        after, counts = self.groups.usage_seconds(), self.groups.throttle_counts()
        self.cores = {n: (after[n] - self.before.get(n, 0.0)) / seconds for n in after}
        self.throttled_share = {n: throttled_share(self.throttle_before.get(n, (0, 0)), c) for n, c in counts.items()}
        return self.cores


def throttled_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of the CFS periods (in which the group wanted to run) that ended with it out of quota."""
    periods, throttled = after[0] - before[0], after[1] - before[1]
    return throttled / periods if periods > 0 else 0.0


def usage_lines(cpus: float, cores: dict[str, float], throttled: dict[str, float] | None = None) -> list[str]:
    """One line per member: the cores it used against its cap, and the share of periods it hit the cap."""
    lines = [f"  {'member':<16}{'cap':>6}{'used cores':>12}{'of cap':>8}" + (f"{'capped periods':>16}" if throttled else "")]
    for name, used in cores.items():
        line = f"  {name:<16}{cpus:>6.2f}{used:>12.3f}{used / cpus:>8.0%}"
        if throttled:
            line += f"{throttled.get(name, 0.0):>16.0%}"
        lines.append(line)
    return lines


def member_pids(cluster_json: dict) -> dict[str, int]:
    """Member name -> pid of a `keychain up` cluster, from its cluster.json (live components only)."""
    out = {}
    for c in cluster_json.get("components", []):
        pid = c.get("pid")
        if isinstance(pid, int) and pid > 0:
            out[str(c["name"])] = pid
    return out
