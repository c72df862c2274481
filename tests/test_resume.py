"""Resume (exact, refused, after Ctrl-C or SIGTERM, from old checkpoints), and what goes wrong around a run: divergence,
bad inputs, corrupted checkpoints; sampling a finished run. Through the real `gan` command."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, TOY, assert_same_training_state, load_last, only_run_dir, run_gan, train_until_step

# the values model.cond and model.ema took before they were options: what the old-checkpoint test needs
BEFORE_COND_AND_EMA = ["model.cond=none", "model.ema=0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny DCGAN run on mnist5k, shared by the sampling and error tests."""
    cwd = tmp_path_factory.mktemp("trained")
    run_gan("train", "train.steps=4", *TINY, *BEFORE_COND_AND_EMA, cwd=cwd, check=True)
    return only_run_dir(cwd)


@pytest.mark.slow
def test_resume_continues_in_the_same_dir_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    straight.mkdir(), split.mkdir()
    run_gan("train", "train.steps=8", *TOY, cwd=straight, check=True)
    run_gan("train", "train.steps=4", *TOY, cwd=split, check=True)
    run = only_run_dir(split)
    proc = run_gan("train", f"resume={run}", "train.steps=8", cwd=split, check=True)
    assert "step 8/8" in proc.stdout
    assert only_run_dir(split) == run, "resume must not create a new run directory"
    assert_same_training_state(load_last(only_run_dir(straight)), load_last(run))
    assert "resumed from" in (run / "train.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        # BatchNorm in both nets, an EMA generator (its BatchNorm statistics recomputed), scores every 4 steps
        # (the lenet classifier is built after the restore), historical averaging and an InfoGAN code
        [
            "model.ema=0.9",
            "eval.every=3",
            "eval.n=200",
            "eval.metrics=[fid]",
            "loss.hist_weight=0.1",
            "model.info_cat=10",
        ],
        ["model=style", "model.ema=0.9"],  # per-layer noise inputs
    ],
    ids=["dcgan-bn-ema-eval-hist-infogan", "style"],
)
def test_resume_is_exact_for_image_models_with_every_stateful_option(
    tmp_path: Path, lenet_cache: Path, case: list[str]
) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    straight.mkdir(), split.mkdir()
    args = [*TINY, *case, "train.sample_every=3", "train.ckpt_every=100"]
    run_gan("train", "train.steps=7", *args, cwd=straight, check=True)
    run_gan("train", "train.steps=4", *args, cwd=split, check=True)
    run = only_run_dir(split)
    run_gan("train", f"resume={run}", "train.steps=7", cwd=split, check=True)
    assert_same_training_state(load_last(only_run_dir(straight)), load_last(run))


@pytest.mark.slow
def test_resume_with_a_different_config_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    run_gan("train", "train.steps=2", *TOY, cwd=tmp_path, check=True)
    run = only_run_dir(tmp_path)
    before = hashlib.sha256((run / "checkpoints" / "last.pt").read_bytes()).hexdigest()
    proc = run_gan("train", f"resume={run}", "train.steps=4", "loss=hinge", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "loss.objective: 'ns' -> 'hinge'" in proc.stderr.replace("\n", " ")
    assert hashlib.sha256((run / "checkpoints" / "last.pt").read_bytes()).hexdigest() == before


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_says_how_to_resume_and_resumes_exactly(tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    straight.mkdir(), split.mkdir()
    steps = ["train.steps=500", "train.log_every=1", "train.sample_every=100000", "train.ckpt_every=100000"]
    proc = train_until_step(5, [*steps, *TOY], split)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    run = only_run_dir(split)
    assert f"gan train resume={run}" in err.replace("\n", " ")
    stopped_at = load_last(run)["step"]
    assert 5 <= stopped_at < 500
    run_gan("train", f"resume={run}", cwd=split, check=True)
    run_gan("train", *steps, *TOY, cwd=straight, check=True, timeout=600)
    assert_same_training_state(load_last(only_run_dir(straight)), load_last(run))


@pytest.mark.slow
def test_sigterm_also_saves_and_says_how_to_resume(tmp_path: Path) -> None:
    """What a cluster scheduler or `kill` sends: the same clean stop as Ctrl-C."""
    proc = train_until_step(3, ["train.steps=100000", "train.log_every=1", *TOY], tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    run = only_run_dir(tmp_path)
    assert "SIGTERM received" in err and f"gan train resume={run}" in err.replace("\n", " ")
    assert load_last(run)["step"] >= 3
    assert "SIGTERM received" in (run / "train.log").read_text()


@pytest.mark.slow
def test_a_nan_stops_the_run_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    proc = run_gan(
        "train",
        *TOY,
        "loss=lsgan",
        "optimizer=sgd",
        "optimizer.lr=3",
        "train.steps=60",
        "train.log_every=1",
        "train.ckpt_every=2",
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    message = proc.stderr.replace("\n", " ")
    assert "Training diverged" in message and "non-finite" in message and "Traceback" not in message
    bad_step = int(message.split(" at step ")[1].split(".")[0].split()[0])
    ckpt = load_last(only_run_dir(tmp_path))
    assert ckpt["step"] < bad_step and f"(step {ckpt['step']})" in message
    assert all(torch.isfinite(t).all() for t in ckpt["models"]["G"].values())


@pytest.mark.slow
def test_sample_png_npy_and_pt_from_run_dir_or_file(trained: Path, tmp_path: Path) -> None:
    run_gan("sample", f"ckpt={trained}", "n=16", f"out={tmp_path / 'grid.png'}", cwd=tmp_path, check=True)
    assert (tmp_path / "grid.png").stat().st_size > 0
    last = trained / "checkpoints" / "last.pt"
    run_gan("sample", f"ckpt={last}", "n=10", "seed=3", f"out={tmp_path / 'a.npy'}", cwd=tmp_path, check=True)
    run_gan("sample", f"ckpt={last}", "n=10", "seed=3", f"out={tmp_path / 'b.pt'}", cwd=tmp_path, check=True)
    a, b = np.load(tmp_path / "a.npy"), torch.load(tmp_path / "b.pt", weights_only=True)
    assert a.shape == (10, 1, 28, 28) and a.min() >= -1 and a.max() <= 1
    assert np.array_equal(a, b.numpy()), "the same seed gives the same samples"
    run_gan("sample", f"ckpt={trained}", "n=4", cwd=tmp_path, check=True)
    assert (trained / "samples" / "sample_seed0.png").is_file()


@pytest.mark.slow
def test_sample_toy_points(tmp_path: Path) -> None:
    run_gan("train", "train.steps=2", *TOY, cwd=tmp_path, check=True)
    run_gan("sample", f"ckpt={only_run_dir(tmp_path)}", "n=50", "out=p.npy", cwd=tmp_path, check=True)
    assert np.load(tmp_path / "p.npy").shape == (50, 2)
    run_gan("sample", f"ckpt={only_run_dir(tmp_path)}", "n=50", "out=p.png", cwd=tmp_path, check=True)
    assert (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.parametrize(
    "args,expected",
    [
        (["sample", "ckpt=/no/such/run"], "does not exist"),
        (["sample"], "needs a checkpoint"),
        (["train", "dataset=mnist", "dataset.download=false", "dataset.root=ROOT"], "use dataset=mnist5k"),
        (["train", "dataset=image_folder", "dataset.path=ROOT"], "holds no images"),
        (["train", "model=dcgan", "dataset=ring8"], "model=dcgan needs images"),
        (["train", "device=cuda:7"], "sees no CUDA GPU"),
    ],
)
def test_bad_input_gives_one_paragraph_no_traceback(tmp_path: Path, args: list[str], expected: str) -> None:
    if torch.cuda.is_available() and "device=cuda:7" in args:
        pytest.skip("this machine has a GPU")
    proc = run_gan(
        *[a.replace("ROOT", str(tmp_path)) for a in args],
        "train.steps=1" if args[0] == "train" else "n=1",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.replace("\n", " ").count(expected) == 1  # said once


@pytest.mark.slow
def test_corrupted_and_incompatible_checkpoints(trained: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes((trained / "checkpoints" / "last.pt").read_bytes()[:1000])
    proc = run_gan("sample", f"ckpt={broken}", cwd=tmp_path)
    assert proc.returncode == 2 and "corrupted" in proc.stderr and "Traceback" not in proc.stderr

    ckpt = load_last(trained)
    ckpt["config"]["model"]["g_width"] = 16  # the weights no longer fit the model the config describes
    other = tmp_path / "other.pt"
    torch.save(ckpt, other)
    proc = run_gan("sample", f"ckpt={other}", cwd=tmp_path)
    assert proc.returncode == 2 and "do not fit" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_checkpoints_from_before_an_option_existed_still_sample_and_resume(trained: Path, tmp_path: Path) -> None:
    """Keys added to the config later take their defaults, which keep the old behaviour."""
    ckpt = load_last(trained)
    for key in ("g_norm", "cond", "attention", "minibatch", "info_cat", "info_cont", "ema"):
        del ckpt["config"]["model"][key]
    for key in ("amp", "channels_last", "compile", "data_on_device"):
        del ckpt["config"]["train"][key]
    for key in ("penalty_every", "aux_on_fake"):
        del ckpt["config"]["loss"][key]
    del ckpt["config"]["eval"]
    old = tmp_path / "old" / "checkpoints" / "last.pt"
    old.parent.mkdir(parents=True)
    torch.save(ckpt, old)
    run_gan("sample", f"ckpt={old}", "n=6", f"out={tmp_path / 'old.npy'}", cwd=tmp_path, check=True)
    run_gan("sample", f"ckpt={trained}", "n=6", f"out={tmp_path / 'new.npy'}", cwd=tmp_path, check=True)
    assert np.array_equal(np.load(tmp_path / "old.npy"), np.load(tmp_path / "new.npy"))
    run_gan(
        "train", f"resume={old.parent.parent}", "train.steps=5", *TINY, *BEFORE_COND_AND_EMA, cwd=tmp_path, check=True
    )
    assert load_last(old.parent.parent)["step"] == 5

    ckpt["config"]["model"]["wings"] = 2  # a key this version does not know
    torch.save(ckpt, old)
    proc = run_gan("sample", f"ckpt={old}", cwd=tmp_path)
    assert proc.returncode == 2 and "wings" in proc.stderr and "Traceback" not in proc.stderr


def test_an_acgan_checkpoint_from_before_aux_on_fake_keeps_the_papers_loss() -> None:
    """ACGAN's D head used to learn from fakes too; an old ACGAN config reads as aux_on_fake=true (any other model: the default)."""
    from gan_cli.config import upgrade_saved_config

    old = {
        "model": {"name": "dcgan", "cond": "acgan"},
        "loss": {"objective": "ns"},
        "optimizer": {"name": "adam"},
        "dataset": {"name": "mnist5k"},
    }
    assert upgrade_saved_config(old)["loss"]["aux_on_fake"] is True
    assert "aux_on_fake" not in old["loss"], "the checkpoint's own dict is not modified"
    old["model"]["cond"] = "concat"
    assert upgrade_saved_config(old)["loss"]["aux_on_fake"] is False


@pytest.mark.slow
def test_warnings_and_the_speed_paths_reach_the_console_and_an_error_is_printed_once(tmp_path: Path) -> None:
    proc = run_gan(
        "train",
        "train.steps=2",
        *TINY,
        "model.cond=none",
        "loss=wgan_gp",
        "model.d_norm=batch",
        cwd=tmp_path,
        check=True,
    )
    assert "speed paths: amp=" in proc.stderr
    assert "loss.penalty=gp with BatchNorm in D" in proc.stderr  # a warning, on the console and in train.log
    assert "loss.penalty=gp with BatchNorm in D" in (only_run_dir(tmp_path) / "train.log").read_text()
    proc = run_gan("train", *TOY, "train.steps=0", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("train.steps=0 must be a positive integer") == 1


def test_a_refused_resume_names_the_overrides_that_resume_the_run_as_it_was_trained(tmp_path: Path) -> None:
    """A default that changed since a run began (model=lapgan's level_input) refuses its resume; the refusal gives
    the overrides that keep what the run was trained with, spelt as Hydra reads them."""
    from gan_cli.errors import GanError
    from gan_cli.rundir import check_resumable

    saved = {"model": {"name": "lapgan", "level_input": "real", "ema": 0.999, "attention": None}, "train": {"steps": 4}}
    now = {"model": {"name": "lapgan", "level_input": "generated", "ema": 0.0, "attention": 14}, "train": {"steps": 8}}
    with pytest.raises(GanError) as refused:
        check_resumable({"config": saved, "step": 2}, tmp_path / "last.pt", now)
    assert str(refused.value).endswith(
        "To resume it as it was trained, add: model.attention=null model.ema=0.999 model.level_input=real."
    ), refused.value
