"""Usable cores from the affinity mask and cgroup quotas (fake cgroup trees in tmp dirs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.resources import cgroup_quota, usable_cores

V2_MOUNT = "41 23 0:38 / {point} rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNT = "32 31 0:29 {root} {point} rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
V1_OTHER = "35 31 0:32 / {point} rw,relatime - cgroup cgroup rw,memory\n"


def fake_proc(tmp_path: Path, cgroup: str, mountinfo: str) -> Path:
    proc = tmp_path / "proc-self"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text(mountinfo)
    return proc


def write(path: Path, text: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for line in text.strip().splitlines():
        name, _, value = line.partition("=")
        (path / name).write_text(value + "\n")


def test_v2_quota_of_a_nested_group_is_found(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    write(mount / "system.slice" / "sluice.service", "cpu.max=max 100000")
    write(mount / "system.slice", "cpu.max=150000 100000")
    write(mount, "cpu.max=max 100000")
    proc = fake_proc(tmp_path, "0::/system.slice/sluice.service\n", V2_MOUNT.format(point=mount))
    assert cgroup_quota(proc) == 1.5


def test_the_tightest_quota_on_the_way_up_wins(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    write(mount / "a" / "b", "cpu.max=400000 100000")
    write(mount / "a", "cpu.max=50000 20000")
    proc = fake_proc(tmp_path, "0::/a/b\n", V2_MOUNT.format(point=mount))
    assert cgroup_quota(proc) == 2.5


def test_v1_container_sees_its_group_as_the_mount_root(tmp_path: Path) -> None:
    mount = tmp_path / "cpu,cpuacct"
    write(mount, "cpu.cfs_quota_us=300000\ncpu.cfs_period_us=100000")
    mounts = V1_MOUNT.format(root="/docker/abc", point=mount) + V1_OTHER.format(
        point=tmp_path / "memory"
    )
    proc = fake_proc(tmp_path, "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n", mounts)
    assert cgroup_quota(proc) == 3.0


def test_hybrid_hierarchy_takes_the_smaller_of_v1_and_v2(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "cpu", tmp_path / "unified"
    write(v1 / "job", "cpu.cfs_quota_us=200000\ncpu.cfs_period_us=100000")
    write(v2 / "job", "cpu.max=100000 100000")
    mounts = V1_MOUNT.format(root="/", point=v1) + V2_MOUNT.format(point=v2)
    proc = fake_proc(tmp_path, "1:cpu:/job\n0::/job\n", mounts)
    assert cgroup_quota(proc) == 1.0


@pytest.mark.parametrize(
    "files",
    [
        "cpu.max=max 100000",
        "cpu.max=garbage",
        "cpu.max=",
        "cpu.cfs_quota_us=-1\ncpu.cfs_period_us=100000",
        "cpu.cfs_quota_us=100000\ncpu.cfs_period_us=0",
    ],
)
def test_no_limit_or_unreadable_values_mean_no_quota(tmp_path: Path, files: str) -> None:
    v1, v2 = tmp_path / "cpu", tmp_path / "unified"
    write(v1, files)
    write(v2, files)
    mounts = V1_MOUNT.format(root="/", point=v1) + V2_MOUNT.format(point=v2)
    proc = fake_proc(tmp_path, "1:cpu:/\n0::/\n", mounts)
    assert cgroup_quota(proc) is None


def test_no_proc_files_mean_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path / "missing") is None


def test_quota_rounds_down_and_never_below_one(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    write(mount, "cpu.max=50000 100000")
    proc = fake_proc(tmp_path, "0::/\n", V2_MOUNT.format(point=mount))
    cores = usable_cores(proc)
    assert cores.quota == 0.5 and cores.count == 1
    assert "cgroup quota 0.5 cores" in cores.describe()


def test_without_a_quota_the_affinity_mask_decides(tmp_path: Path) -> None:
    cores = usable_cores(tmp_path / "missing")
    assert cores.count == cores.affinity == len(os.sched_getaffinity(0))
    assert cores.quota is None and "no cgroup CPU quota" in cores.describe()


def test_a_quota_above_the_affinity_mask_changes_nothing(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    write(mount, "cpu.max=6400000 100000")
    proc = fake_proc(tmp_path, "0::/\n", V2_MOUNT.format(point=mount))
    assert usable_cores(proc).count == len(os.sched_getaffinity(0))
