"""The CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota.

A container limited with ``--cpus 2`` on a 32-core host still sees 32 CPUs in its affinity
mask; only the cgroup's quota says 2. So: ``os.sched_getaffinity`` first, then the tightest
quota on the way from the process's own cgroup up to the hierarchy's root (cgroup v2
``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), found through
``/proc/self/cgroup`` and ``/proc/self/mountinfo`` as the Go runtime and automaxprocs do, so a
process in a systemd slice or a nested cgroup is covered as well as one in a container.

joblib/loky's ``cpu_count`` reads only the fixed root paths (``/sys/fs/cgroup/cpu.max``), which
misses a quota set on a nested group, and would be a new dependency for 100 lines.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROC_SELF = Path("/proc/self")


@dataclass(frozen=True, slots=True)
class Cores:
    """How many cores the process may use, and where the figure came from."""

    count: int
    affinity: int
    quota: float | None  # cores allowed by the cgroup quota; None: no quota

    def describe(self) -> str:
        if self.quota is None:
            return f"{self.count} (affinity {self.affinity}, no cgroup CPU quota)"
        return f"{self.count} (affinity {self.affinity}, cgroup quota {self.quota:g} cores)"


def usable_cores(proc_self: Path = PROC_SELF) -> Cores:
    """The affinity mask's size, lowered to the cgroup quota rounded down (at least 1).

    Rounding down: a quota of 1.5 cores runs two busy threads at 75 % each, throttled every
    period, which is slower than one thread (the oversubscription the defaults avoid).
    """
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    affinity = affinity or os.cpu_count() or 1
    quota = cgroup_quota(proc_self)
    count = affinity if quota is None else max(1, min(affinity, math.floor(quota)))
    return Cores(count, affinity, quota)


def cgroup_quota(proc_self: Path = PROC_SELF) -> float | None:
    """The tightest CPU quota (in cores) over the process's cgroup and its ancestors."""
    try:
        groups = _read(proc_self / "cgroup")
        mounts = _read(proc_self / "mountinfo")
    except OSError:
        return None  # not Linux, or no /proc: no quota we can see
    paths = _cgroup_paths(groups)
    found: list[float] = []
    for line in mounts.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        root, mount_point = fields[3], fields[4]
        fstype = fields[sep + 1]
        options = fields[sep + 3].split(",") if len(fields) > sep + 3 else []
        if fstype == "cgroup2" and "" in paths:
            found += _walk(Path(mount_point), _relative(paths[""], root), _quota_v2)
        elif fstype == "cgroup" and "cpu" in options and "cpu" in paths:
            found += _walk(Path(mount_point), _relative(paths["cpu"], root), _quota_v1)
    return min(found, default=None)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _cgroup_paths(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` as controller -> path; the v2 unified group under ``""``."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def _relative(group: str, mount_root: str) -> str:
    """The group's path below the mount (a container sees its own group as the root)."""
    if mount_root != "/" and (group == mount_root or group.startswith(mount_root + "/")):
        group = group[len(mount_root) :]
    return group.strip("/")


def _walk(mount_point: Path, relative: str, read: Callable[[Path], float | None]) -> list[float]:
    """Quotas of the group and each ancestor up to the mount point, where they exist."""
    quotas = []
    directory = mount_point / relative if relative else mount_point
    while True:
        value = read(directory)
        if value is not None:
            quotas.append(value)
        if directory == mount_point or mount_point not in directory.parents:
            return quotas
        directory = directory.parent


def _quota_v2(directory: Path) -> float | None:
    """``cpu.max`` holds ``"$MAX $PERIOD"``; ``max`` means no limit."""
    try:
        fields = _read(directory / "cpu.max").split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _quota_v1(directory: Path) -> float | None:
    """``cpu.cfs_quota_us`` is -1 without a limit."""
    try:
        quota = _read(directory / "cpu.cfs_quota_us").strip()
        period = _read(directory / "cpu.cfs_period_us").strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None
