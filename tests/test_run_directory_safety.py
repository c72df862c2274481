"""A run directory is never written over: a new run or sweep into a used folder is refused, metrics.json and the
other files gan writes there are replaced (temp file + rename), never followed through a symlink nor left half
written, and a refusal names only what is wrong (issue 29, items 9, 17, 18, 19, 20)."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import GAUSS1D, gan_env, run_gan

from gan_cli.errors import GanError

FAST = [*GAUSS1D, "train.steps=2", "train.threads=1"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished two-step run, trained once; each test works on its own copy (`run`)."""
    where = tmp_path_factory.mktemp("finished")
    run_gan("train", *FAST, f"hydra.run.dir={where / 'run'}", cwd=where, check=True)
    return where / "run"


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy, symlinks=True)
    return copy


def one_error(proc: subprocess.CompletedProcess) -> str:
    """The refusal: exit 2, one `gan: error:` paragraph, no traceback."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gan: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def strict_json(path: Path):
    """JSON as any strict reader takes it: a bare NaN or Infinity fails."""

    def refuse(name: str):
        raise AssertionError(f"{path} holds a bare {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


# ---------------------------------------------------------------------------------------------
# 18: a new run into a finished run; 19: a sweep into a used sweep directory
# ---------------------------------------------------------------------------------------------
def test_a_new_run_into_a_finished_run_is_refused_and_a_resume_of_it_is_not(run: Path, tmp_path: Path) -> None:
    before = snapshot(run)
    error = one_error(run_gan("train", *FAST, "seed=1", f"hydra.run.dir={run}", cwd=tmp_path))
    assert "already holds a run" in error and f"resume={run}" in error, error
    assert snapshot(run) == before, "a refused run must leave the earlier one exactly as it was"
    # a resume names the same directory (resume_arguments sets hydra.run.dir) and is not refused
    run_gan("train", f"resume={run}", "train.steps=3", cwd=tmp_path, check=True)
    assert json.loads((run / "status.json").read_text())["step"] == 3


def test_a_folder_with_only_the_users_own_files_or_nothing_is_not_a_used_run(tmp_path: Path) -> None:
    from gan_cli.rundir import refuse_used_run_dir, run_outputs

    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "checkpoints").write_text("a file, not a run's checkpoints folder")
    assert run_outputs(tmp_path) == [] and run_outputs(tmp_path / "missing") == []
    refuse_used_run_dir(tmp_path)
    (tmp_path / "train.log").write_text("")
    with pytest.raises(GanError, match="already holds a run"):
        refuse_used_run_dir(tmp_path)


def test_a_sweep_into_a_sweep_directory_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "left_over.txt").write_text("job 0 of an earlier sweep")
    error = one_error(run_gan("train", "-m", *FAST, "seed=1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path))
    assert f"hydra.sweep.dir={str(sweep)!r} is not empty" in error and f"hydra.sweep.dir={sweep}_2" in error, error
    assert sorted(p.name for p in sweep.rglob("*")) == ["0", "left_over.txt"]


@pytest.mark.slow
def test_torchrun_ranks_train_in_the_directory_they_name_and_refuse_a_used_one_together(tmp_path: Path) -> None:
    def torchrun() -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "gan_cli", "train"]
        return subprocess.run(
            [*command, *FAST, f"hydra.run.dir={tmp_path / 'ddp'}"],
            cwd=tmp_path,
            env=gan_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = torchrun()  # rank 1 checks after rank 0 may have made the directory: it must not refuse it
    assert first.returncode == 0, first.stderr[-3000:]
    again = torchrun()  # both ranks refuse (rank 0 decides), neither waits for the other
    assert again.returncode != 0 and "already holds a run" in again.stderr, again.stderr[-3000:]


# ---------------------------------------------------------------------------------------------
# 20: metrics.json written atomically, strict JSON, an unreadable one refused
# ---------------------------------------------------------------------------------------------
def test_an_unreadable_metrics_json_is_refused_and_left_as_it_is(run: Path, tmp_path: Path) -> None:
    cut = '{"all_scores": {"mean_gap200": {"value": 7.02, "step'  # what a full disk left
    (run / "metrics.json").write_text(cut)
    error = one_error(run_gan("eval", f"ckpt={run}", "n=200", cwd=tmp_path))
    assert "metrics.json" in error and "not valid JSON" in error and "mv " in error, error
    assert (run / "metrics.json").read_text() == cut


def test_eval_writes_strict_json_with_absolute_paths_and_replaces_a_symlink_instead_of_following_it(
    run: Path, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text('{"all_scores": {}}')
    (run / "metrics.json").symlink_to(target)
    relative = os.path.relpath(run, tmp_path)
    run_gan("eval", f"ckpt={relative}", "n=200", cwd=tmp_path, check=True)
    assert target.read_text() == '{"all_scores": {}}', "the link's target was written through"
    assert not (run / "metrics.json").is_symlink()
    result = strict_json(run / "metrics.json")
    assert result["checkpoint"] == str(run / "checkpoints" / "last.pt")
    assert all(Path(e["checkpoint"]).is_absolute() for e in result["all_scores"].values())
    assert not list(run.glob(".metrics.json.*.tmp"))


def test_json_text_writes_nan_as_null_and_infinity_as_a_string() -> None:
    from gan_cli.files import json_text

    text = json_text({"fid": math.nan, "kid": [math.inf, -math.inf, 1.5]})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"fid": None, "kid": ["inf", "-inf", 1.5]}


def test_a_full_disk_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gan_cli import files

    path = tmp_path / "metrics.json"
    path.write_text('{"all_scores": {"a": 1}}\n')

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError):
        files.write_atomic(path, '{"all_scores": {"a": 1, "b": 2}}\n')
    assert path.read_text() == '{"all_scores": {"a": 1}}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"], "the temp file is removed"


# ---------------------------------------------------------------------------------------------
# 17: symlinks inside a run directory
# ---------------------------------------------------------------------------------------------
def test_appending_to_metrics_jsonl_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    from gan_cli.files import append_atomic

    target = tmp_path / "someone_elses.txt"
    target.write_text("theirs\n")
    link = tmp_path / "metrics.jsonl"
    link.symlink_to(target)
    append_atomic(link, '{"step": 10}\n')
    append_atomic(link, '{"step": 20}\n')
    assert target.read_text() == "theirs\n"
    assert not link.is_symlink() and link.read_text() == '{"step": 10}\n{"step": 20}\n'


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_a_lock_that_is_not_a_regular_file_is_refused_and_its_target_untouched(tmp_path: Path, kind: str) -> None:
    from gan_cli.rundir import LOCK_FILE, RunLock, is_locked

    target = tmp_path / "precious.txt"
    target.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    lock = run / LOCK_FILE
    {"symlink": lambda: lock.symlink_to(target), "fifo": lambda: os.mkfifo(lock), "folder": lock.mkdir}[kind]()
    with pytest.raises(GanError, match="Nothing was written") as refused:
        with RunLock(run):
            pass
    assert len(str(refused.value).splitlines()) == 1
    assert target.read_text() == "precious"
    assert is_locked(run) is None


def test_a_resume_is_refused_before_it_writes_through_a_linked_lock(run: Path, tmp_path: Path) -> None:
    target = tmp_path / "precious.png"
    target.write_bytes(b"precious")
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(target)
    error = one_error(run_gan("train", f"resume={run}", "train.steps=4", cwd=tmp_path))
    assert "symbolic link" in error and ".lock" in error, error
    assert target.read_bytes() == b"precious"


def test_a_resume_replaces_a_linked_sample_grid_and_leaves_its_target_untouched(run: Path, tmp_path: Path) -> None:
    """The training loop's image writers replace a link at samples/step_N.png (temp file + rename) instead of
    writing the picture into the file it points to."""
    target = tmp_path / "precious.png"
    target.write_bytes(b"precious")
    grid = run / "samples" / "step_000004.png"  # where the resumed run draws its picture at step 4
    grid.symlink_to(target)
    run_gan("train", f"resume={run}", "train.steps=4", "train.sample_every=2", cwd=tmp_path, check=True)
    assert target.read_bytes() == b"precious"
    assert not grid.is_symlink() and grid.read_bytes().startswith(b"\x89PNG")


def test_every_image_writer_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    """The sample grids (images: save_grid; toy data and the D* plots: save_figure) and a sweep's report.md."""
    import torch

    from gan_cli.plots import image_grid, points_figure, save_figure, save_grid
    from gan_cli.report.output import write_report
    from gan_cli.report.runs import Report

    target = tmp_path / "precious.bin"
    target.write_bytes(b"precious")
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    writers = {
        "samples/step_000250.png": lambda p: save_grid(image_grid(torch.zeros(4, 1, 8, 8)), p),
        "samples/step_000500.png": lambda p: save_figure(points_figure(torch.zeros(8, 2)), p),
        "report.md": lambda p: write_report(Report(runs=[], shared={}, varied=[], sort=None, direction=None), p),
    }
    for name, write in writers.items():
        link = run / name
        link.symlink_to(target)
        write(link)
        assert target.read_bytes() == b"precious", name
        assert not link.is_symlink() and link.stat().st_size > 0, name
    assert sorted(p.name for p in run.rglob("*.tmp")) == [], "no temp file is left behind"


# ---------------------------------------------------------------------------------------------
# 9: messages that name only what is wrong
# ---------------------------------------------------------------------------------------------
def test_removing_a_key_says_keys_cannot_be_removed_and_how_to_switch_it_off(tmp_path: Path) -> None:
    error = one_error(run_gan("train", *FAST, "~model.d_norm", cwd=tmp_path))
    assert "cannot be removed" in error and "model.d_norm=none" in error, error
    assert "does not support deletion" not in error
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("key", "hint"),
    [("model.d_norm", "model.d_norm=none"), ("eval.best", "eval.best=null"), ("model.attention", "model.attention=0")],
)
def test_the_off_hint_follows_the_keys_type(key: str, hint: str) -> None:
    from gan_cli.composition import refuse_deleted_keys

    with pytest.raises(GanError, match="cannot be removed") as refused:
        refuse_deleted_keys("train", [f"~{key}"])
    assert hint in str(refused.value)


def test_the_optuna_refusal_names_only_what_is_missing() -> None:
    from gan_cli.arguments import search_arguments

    with pytest.raises(GanError) as refused:
        search_arguments(["-m", "hydra/sweeper=optuna", "eval.every=150"])
    assert "eval.best" in str(refused.value) and "eval.every > 0" not in str(refused.value)
    with pytest.raises(GanError) as refused:
        search_arguments(["-m", "hydra/sweeper=optuna", "eval.every=0", "eval.best=hq2.5k"])
    assert "eval.every > 0 (now 0)" in str(refused.value) and "eval.best (now" not in str(refused.value)
