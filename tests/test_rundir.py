"""A run directory is never wrong: unique per run, one trainer at a time, untouched by a refused resume,
resumable from any path, and free of the leftovers of a killed checkpoint write. Real `gan` processes."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import TOY, compose_train, gan_env, load_last, only_run_dir, run_gan, train_until_step


def tree_digest(run: Path) -> dict[str, str]:
    """Every file under the run directory and its content hash."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_two_runs_started_together_get_a_directory_each(tmp_path: Path) -> None:
    """`gan train ... seed=1 & gan train ... seed=2 &` in one second: each run keeps its own checkpoint and log."""
    cmd = [sys.executable, "-m", "gan_cli", "train", *TOY, "train.steps=6"]
    procs = [
        subprocess.Popen(
            [*cmd, f"seed={seed}"],
            cwd=tmp_path,
            env=gan_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    runs = sorted(p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir())
    assert len(runs) == 2
    for proc, seed in zip(procs, (1, 2)):
        run = next(r for r in runs if r.name.endswith(f"_{proc.pid}"))  # DATE/TIME_PID
        assert load_last(run)["config"]["seed"] == seed
        assert f"seed={seed}" in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        assert (run / "train.log").read_text().count("finished") == 1


@pytest.mark.slow
def test_a_refused_resume_changes_nothing_and_an_accepted_one_records_itself_beside_the_original(
    tmp_path: Path,
) -> None:
    run_gan("train", *TOY, "train.steps=4", "optimizer.schedule=constant", cwd=tmp_path, check=True)
    run = only_run_dir(tmp_path)
    before = tree_digest(run)
    for bad in (
        ["loss=wgan"],
        ["train.steps=2"],
        ["train.steps=0"],
    ):  # another loss; a run already past the end; a bad value
        proc = run_gan("train", f"resume={run}", *bad, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert tree_digest(run) == before, f"resume with {bad} changed the run directory"
    original = {name: (run / ".hydra" / name).read_text() for name in ("overrides.yaml", "config.yaml")}
    run_gan("train", f"resume={run}", "train.steps=8", cwd=tmp_path, check=True)
    assert load_last(run)["step"] == 8
    assert {name: (run / ".hydra" / name).read_text() for name in original} == original
    (record,) = (run / ".hydra" / "resumes").iterdir()
    assert record.name.endswith("_step4")
    assert "train.steps=8" in yaml.safe_load((record / "overrides.yaml").read_text())
    assert yaml.safe_load((record / "config.yaml").read_text())["train"]["steps"] == 8


@pytest.mark.slow
def test_a_second_trainer_in_the_same_directory_is_refused_and_a_killed_ones_lock_does_not_block(
    tmp_path: Path,
) -> None:
    run_gan("train", *TOY, "train.steps=2", "optimizer.schedule=constant", cwd=tmp_path, check=True)
    run = only_run_dir(tmp_path)
    first = train_until_step(4, [f"resume={run}", "train.steps=100000", "train.log_every=1"], tmp_path)
    try:
        second = run_gan("train", f"resume={run}", "train.steps=100000", cwd=tmp_path)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"is in use: a `gan train` (pid {first.pid})" in second.stderr.replace("\n", " ")
    finally:
        first.kill()  # SIGKILL: no handler runs, the lock file stays behind
        first.communicate(timeout=60)
    assert (run / ".lock").read_text() == str(first.pid)
    steps_before = load_last(run)["step"]
    run_gan("train", f"resume={run}", f"train.steps={steps_before + 2}", cwd=tmp_path, check=True)
    assert load_last(run)["step"] == steps_before + 2


@pytest.mark.slow
def test_a_run_in_a_folder_with_spaces_and_emoji_resumes_with_the_command_it_prints(tmp_path: Path) -> None:
    run = tmp_path / "my runs" / "x ü 😀"
    proc = train_until_step(
        3,
        [*TOY, "train.steps=100000", "train.log_every=1", "optimizer.schedule=constant", f"hydra.run.dir='{run}'"],
        tmp_path,
    )
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    printed = err.replace("\n", " ").split("Continue with: ", 1)[1].strip()
    stopped = load_last(run)["step"]
    pasted = subprocess.run(
        ["sh", "-c", f"{printed} train.steps={stopped + 2}"],
        cwd=tmp_path,
        env={**gan_env(), "PATH": f"{Path(sys.executable).parent}:{gan_env()['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pasted.returncode == 0, pasted.stderr
    assert load_last(run)["step"] == stopped + 2
    # the path typed in Hydra's own quoting works too
    run_gan("train", f"resume='{run}'", f"train.steps={stopped + 4}", cwd=tmp_path, check=True)
    assert load_last(run)["step"] == stopped + 4


@pytest.mark.slow
def test_resume_removes_the_temp_files_of_a_killed_write(tmp_path: Path) -> None:
    run_gan("train", *TOY, "train.steps=4", "optimizer.schedule=constant", cwd=tmp_path, check=True)
    run = only_run_dir(tmp_path)
    stale = run / "checkpoints" / ".last.pt.k2j4h1.tmp"
    stale.write_bytes(b"\0" * 1024)  # what save_checkpoint leaves when killed between mkstemp and rename
    run_gan("train", f"resume={run}", "train.steps=6", cwd=tmp_path, check=True)
    assert not list((run / "checkpoints").glob(".*.tmp"))
    assert "removed 1 temp file" in (run / "train.log").read_text()


def test_last_pt_is_written_after_the_periodic_and_best_checkpoints(tmp_path: Path, monkeypatch) -> None:
    """A process killed while writing step_N.pt or best.pt resumes from before step N and writes them again."""
    import gan_cli.training.state as state_module
    from gan_cli.training.run import train

    written: list[str] = []
    real_save = state_module.save_checkpoint
    monkeypatch.setattr(
        state_module, "save_checkpoint", lambda payload, path: (written.append(path.name), real_save(payload, path))
    )
    cfg = compose_train(*TOY, "train.steps=4", "train.ckpt_every=2", "eval.every=2", "eval.n=200", "eval.best=hq200")
    train(cfg, tmp_path / "run", [], {})
    assert written[-1] == "last.pt" and written.count("last.pt") == 2
    for periodic in ("step_000002.pt", "step_000004.pt"):
        assert written.index(periodic) < written.index("last.pt", written.index(periodic))
    assert "best.pt" in written and written.index("best.pt") < written.index("last.pt")


# ---------------------------------------------------------------------------------------------
# I/O failures: one paragraph, exit code 4, status failed, and how to go on
# ---------------------------------------------------------------------------------------------
def session_status(run: Path) -> int:
    """The HParams session-end status TensorBoard shows for the run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    acc = EventAccumulator(str(run))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_end_info"]
    return HParamsPluginData.FromString(content).session_end_info.status


def test_a_run_directory_that_cannot_take_checkpoints_is_refused_before_step_1(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("a file where the checkpoints folder should be")
    proc = run_gan("train", *TOY, "train.steps=50", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gan: error:")]
    assert len(errors) == 1 and f"Writing to '{run / 'checkpoints'}' failed" in errors[0]
    assert not list(run.glob("events.out.tfevents.*")), "nothing should be trained or logged"


def test_a_corrupt_image_stops_the_run_with_its_name_and_status_failed(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(24):
        Image.new("RGB", (16, 16), (10 * i, 0, 0)).save(folder / f"{i:02d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    run = tmp_path / "run"
    proc = run_gan(
        "train",
        "dataset=image_folder",
        f"dataset.path={folder}",
        "dataset.image_size=16",
        "model.cond=none",
        "model.g_width=8",
        "model.d_width=8",
        "train.batch_size=25",
        "train.steps=3",
        "eval.every=0",
        "train.num_workers=0",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert proc.returncode == 4 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot read this image" in proc.stderr and "broken.png" in proc.stderr
    log = (run / "train.log").read_text()
    assert "failed at step" in log and "finished" not in log


def test_a_full_disk_mid_run_names_the_cause_keeps_the_checkpoint_and_says_how_to_resume(
    tmp_path: Path, monkeypatch
) -> None:
    import errno

    import gan_cli.training.state as state_module
    from gan_cli.errors import GanError
    from gan_cli.training.run import train

    calls: list[str] = []
    real_save = state_module.save_checkpoint

    def save_until_the_disk_fills(payload, path):
        calls.append(path.name)
        if len(calls) > 2:  # step_000002.pt and last.pt of step 2 fit; step 4's do not
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_save(payload, path)

    monkeypatch.setattr(state_module, "save_checkpoint", save_until_the_disk_fills)
    run = tmp_path / "run"
    cfg = compose_train(*TOY, "train.steps=6", "train.ckpt_every=2")
    try:
        train(cfg, run, [], {})
        raise AssertionError("training went on with a full disk")
    except GanError as err:
        message = str(err)
        assert err.exit_code == 4
        assert "No space left on device" in message and "The disk is full" in message
        assert f"then continue with: gan train resume={run}" in message
    assert load_last(run)["step"] == 2
    from tensorboard.plugins.hparams import api_pb2

    assert session_status(run) == api_pb2.STATUS_FAILURE


@pytest.mark.slow
# ---------------------------------------------------------------------------------------------
# one paragraph, never a traceback
# ---------------------------------------------------------------------------------------------
def test_ctrl_c_while_starting_gives_one_line_and_exit_130(tmp_path: Path) -> None:
    import time

    for delay in (
        0.5,
        0.8,
        1.4,
        2.0,
    ):  # while the libraries load (torch takes seconds); while Hydra composes and the data loads
        proc = subprocess.Popen(
            [sys.executable, "-m", "gan_cli", "train", *TOY, "train.steps=100000"],
            cwd=tmp_path,
            env=gan_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130 and "Traceback" not in err, (delay, err)
        assert err.strip().startswith("gan: error:") and "interrupted" in err


def test_a_step_count_with_400_digits_is_refused_before_a_run_directory_exists(tmp_path: Path) -> None:
    proc = run_gan("train", *TOY, "train.steps=" + "9" * 400, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is more than 1,000,000,000 steps" in proc.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_gan_sample_to_an_unwritable_place_is_one_paragraph(tmp_path: Path) -> None:
    run_gan("train", *TOY, "train.steps=2", cwd=tmp_path, check=True)
    run = only_run_dir(tmp_path)
    (tmp_path / "taken").write_text("a file, not a folder")
    proc = run_gan("sample", f"ckpt={run}", f"out={tmp_path / 'taken' / 'grid.png'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot be written" in proc.stderr and "taken" in proc.stderr


@pytest.mark.slow
def test_moving_the_data_does_not_block_a_resume_but_other_data_does(tmp_path: Path) -> None:
    from gan_cli.rundir import resume_changes

    saved = {"dataset": {"name": "mnist", "root": "/old/disk", "path": None, "download": True}, "train": {"steps": 10}}
    moved = {"dataset": {"name": "mnist", "root": "/new/disk", "path": None, "download": False}, "train": {"steps": 20}}
    assert resume_changes(saved, moved) == []
    assert resume_changes(saved, {**moved, "dataset": {**moved["dataset"], "name": "cifar10"}}) == [
        "dataset.name: 'mnist' -> 'cifar10'"
    ]
    # a run on a toy resumed where its data has another shape is refused by train() itself
    run_gan("train", *TOY, "train.steps=2", cwd=tmp_path, check=True)
    run = only_run_dir(tmp_path)
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["data_spec"]["shape"] = [3]
    torch.save(ckpt, run / "checkpoints" / "last.pt")
    proc = run_gan("train", f"resume={run}", "train.steps=4", cwd=tmp_path)
    assert (
        proc.returncode == 2
        and "the run trained on ring8: 3, 8 classes, but the data found now is ring8: 2, 8 classes"
        in proc.stderr.replace("\n", " ")
    )


@pytest.mark.slow
def test_out_of_memory_and_a_path_too_long_are_one_paragraph(tmp_path: Path) -> None:
    run_gan("train", *TOY, "train.steps=2", cwd=tmp_path, check=True)
    run = only_run_dir(tmp_path)
    # 10^11 latent vectors cannot be allocated (one allocation, refused at once): say it is memory and what to lower
    proc = run_gan("sample", f"ckpt={run}", "n=100000000000", f"out={tmp_path / 'x.npy'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "Out of memory" in proc.stderr and "lower n (now 100000000000)" in proc.stderr
    proc = run_gan("train", *TOY, "train.steps=2", "train.batch_size=100000000000", cwd=tmp_path)
    assert (
        proc.returncode == 2
        and "Traceback" not in proc.stderr
        and "train.batch_size=100000000000 is larger than the dataset (20,000" in proc.stderr
    )
    too_long = str(tmp_path / ("a" * 300) / ("b" * 5000))
    for args in (["sample", f"ckpt={too_long}"], ["eval", f"ckpt={too_long}"], ["train", f"resume={too_long}"]):
        proc = run_gan(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "cannot be used: File name too long" in proc.stderr and "(5,3" in proc.stderr, proc.stderr
