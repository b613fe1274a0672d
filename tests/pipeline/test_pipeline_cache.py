"""A step is reused exactly when nothing its key covers changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.pipeline.hashing import Hasher
from server.pipeline.records import connect

from .conftest import CHAIN, Run, cache, write


def test_first_run_misses_then_everything_is_reused(run: Run, project: Path) -> None:
    assert cache(run(CHAIN)) == {"a": "miss", "b": "miss"}
    assert (project / "work/b.txt").read_text() == "hello\n!"
    second = run()
    assert second["status"] == "succeeded"
    assert cache(second) == {"a": "hit", "b": "hit"}


def test_input_rewritten_with_the_same_size_and_mtime_is_a_miss(run: Run, project: Path) -> None:
    run(CHAIN)
    data = project / "data.txt"
    before = data.stat()
    data.write_text("HELLO\n")  # same size
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime set back
    assert data.stat().st_mtime_ns == before.st_mtime_ns
    assert cache(run()) == {"a": "miss", "b": "miss"}
    assert (project / "work/b.txt").read_text() == "HELLO\n!"


def test_changed_parameter_reruns_only_the_step_that_uses_it(run: Run, project: Path) -> None:
    run(CHAIN)
    assert cache(run(params={"suffix": "?"})) == {"a": "hit", "b": "miss"}
    assert (project / "work/b.txt").read_text() == "hello\n?"


def test_changed_step_code_is_a_miss(run: Run, project: Path) -> None:
    run(CHAIN)
    steps = project / "steps.py"
    steps.write_text(steps.read_text().replace("str(params", "'#' + str(params"))
    assert cache(run()) == {"a": "miss", "b": "miss"}
    assert (project / "work/b.txt").read_text() == "hello\n##!"  # a's output and b's suffix


def test_changed_helper_imported_transitively_is_a_miss(run: Run, project: Path) -> None:
    write(
        project,
        {
            "job.py": "from helpers import fmt\n\ndef main(inputs, outputs, params):\n"
            "    outputs['out'].write_text(fmt.shout(inputs['data'].read_text()))\n",
            "helpers/__init__.py": "",
            "helpers/fmt.py": "from .deep import mark\n\n"
            "def shout(t):\n    return mark(t.upper())\n",
            "helpers/deep.py": "def mark(t):\n    return t + '*'\n",
        },
    )
    toml = (
        '[steps.j]\nkind = "python"\nfunction = "job:main"\n'
        'inputs = { data = "data.txt" }\noutputs = { out = "work/j.txt" }\n'
    )
    assert cache(run(toml)) == {"j": "miss"}
    assert cache(run()) == {"j": "hit"}
    (project / "helpers/deep.py").write_text("def mark(t):\n    return t + '+'\n")
    assert cache(run()) == {"j": "miss"}
    assert (project / "work/j.txt").read_text() == "HELLO\n+"


def test_deleted_or_edited_output_is_not_reused(run: Run, project: Path) -> None:
    run(CHAIN)
    (project / "work/b.txt").unlink()
    assert cache(run()) == {"a": "hit", "b": "miss"}
    (project / "work/a.txt").write_text("tampered\n")
    summary = run()
    assert cache(summary) == {"a": "miss", "b": "hit"}  # a's rerun restores b's exact input
    assert (project / "work/a.txt").read_text() == "hello\n"


def test_nondeterministic_step_reruns_unless_reuse_is_asked(run: Run) -> None:
    toml = CHAIN.replace("[steps.b]\n", "[steps.b]\ndeterministic = false\n")
    run(toml)
    assert cache(run()) == {"a": "hit", "b": "miss"}
    assert cache(run(reuse_nondeterministic=True)) == {"a": "hit", "b": "hit"}


def test_force_and_from(run: Run) -> None:
    run(CHAIN)
    assert cache(run(force=("a",))) == {"a": "miss", "b": "hit"}
    assert cache(run(from_step="a")) == {"a": "miss", "b": "miss"}


def test_memo_skips_rereading_unchanged_files_and_verify_rereads(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    memo = Hasher(connect(tmp_path))
    first = memo.digest(big)
    assert memo.bytes_hashed == 3 << 20
    assert memo.digest(big) == first
    assert memo.bytes_hashed == 3 << 20  # the second lookup read nothing
    verify = Hasher(connect(tmp_path), verify=True)
    assert verify.digest(big) == first
    assert verify.bytes_hashed == 3 << 20


@pytest.mark.parametrize("size", [10, 3 << 20])
def test_digest_is_blake3_of_the_bytes(tmp_path: Path, size: int) -> None:
    import blake3

    payload = os.urandom(size)
    (tmp_path / "f").write_bytes(payload)
    assert Hasher(connect(tmp_path)).digest(tmp_path / "f") == blake3.blake3(payload).hexdigest()


def test_directory_digest_changes_on_rename(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write(folder, {"x.txt": "1", "sub/y.txt": "2"})
    hasher = Hasher(connect(tmp_path))
    before = hasher.digest(folder)
    (folder / "sub/y.txt").rename(folder / "sub/z.txt")
    assert hasher.digest(folder) != before
