"""Every GAN variant trains a few steps through the real `gan` command; conditional, interpolation,
arithmetic and InfoGAN sampling modes return what they promise; bad combinations are clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import GAUSS1D, TINY, TWO_STEPS, only_run_dir, run_gan, sample_array, scalar_tags

from gan_cli.errors import GanError


def train(workdir: Path, *args: str) -> Path:
    run_gan("train", *args, *TWO_STEPS, *TINY, cwd=workdir, check=True)
    return only_run_dir(workdir)


@pytest.mark.slow
def test_conditional_gan_samples_the_requested_classes(workdir: Path) -> None:
    run = train(workdir, "model=mlp", "model.cond=concat")
    assert sample_array(workdir, run, labels=[3, 3, 7]).shape == (3, 1, 28, 28)
    classes = sample_array(workdir, run, mode="classes", nrow=4)
    assert classes.shape == (40, 1, 28, 28)
    assert not np.allclose(classes[0], classes[4])  # same z, class 0 vs class 1
    run_gan("sample", f"ckpt={run}", "mode=classes", "nrow=4", cwd=workdir, check=True)
    assert (run / "samples" / "classes_seed0.png").is_file()
    proc = run_gan("sample", f"ckpt={run}", "mode=codes", cwd=workdir)
    assert proc.returncode == 2 and "InfoGAN" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(GanError, match="0..9"):
        sample_array(workdir, run, labels=[12])


@pytest.mark.slow
def test_sngan_preset_with_a_projection_discriminator_and_virtual_batch_norm(workdir: Path) -> None:
    run = train(workdir, "experiment=sngan", "model.cond=projection", "model.g_norm=virtual")
    assert "loss/D" in scalar_tags(run)


@pytest.mark.slow
def test_sagan_preset_trains_with_attention_and_two_learning_rates(workdir: Path) -> None:
    run = train(workdir, "experiment=sagan", "model.cond=none")  # unconditional, to check that labels are refused
    cfg = (run / ".hydra" / "config.yaml").read_text()
    assert "attention: 14" in cfg and "g_spectral: true" in cfg
    with pytest.raises(GanError, match="conditional"):
        sample_array(workdir, run, labels=[1])


@pytest.mark.slow
def test_acgan_with_the_improved_techniques_logs_every_term(workdir: Path) -> None:
    run = train(
        workdir,
        "experiment=acgan",
        "model.minibatch=mbdisc",
        "loss.label_smoothing=0.1",
        "loss.hist_weight=0.01",
        "loss.ortho_weight=1e-4",
    )
    assert {"loss/ac", "loss/ac_G", "loss/hist_D", "loss/hist_G", "loss/ortho"} <= scalar_tags(run)
    # resume keeps the historical averages (they are in the checkpoint)
    run_gan("train", f"resume={run}", "train.steps=3", cwd=workdir, check=True)


@pytest.mark.slow
def test_infogan_with_feature_matching_and_its_sampling_modes(workdir: Path) -> None:
    run = train(workdir, "experiment=infogan", "model.info_cat=3", "loss.feature_matching=true")
    assert {"loss/info", "loss/info_G", "estimate/mutual_info"} <= scalar_tags(run)
    codes = sample_array(workdir, run, mode="codes", nrow=6)
    assert codes.shape == (3 * 6, 1, 28, 28)  # one row per code: the categorical one and two continuous ones
    frames = sample_array(workdir, run, mode="interp", seeds=[1, 2], nrow=5)
    assert frames.shape == (5, 1, 28, 28)
    other_end = sample_array(workdir, run, mode="interp", seeds=[1, 5], nrow=5)
    assert np.allclose(frames[0], other_end[0], atol=1e-5) and not np.allclose(frames[-1], other_end[-1])
    assert sample_array(workdir, run, mode="arithmetic", seeds=list(range(1, 10))).shape == (16, 1, 28, 28)
    proc = run_gan("sample", f"ckpt={run}", "mode=arithmetic", "seeds=[1,2]", cwd=workdir)
    assert proc.returncode == 2 and "nine seeds" in proc.stderr


@pytest.mark.slow
def test_style_generator_trains_with_r1(workdir: Path) -> None:
    run = train(workdir, "model=style", "loss.penalty=r1", "loss.penalty_weight=5")
    assert "loss/penalty" in scalar_tags(run)
    assert sample_array(workdir, run, n=4).shape == (4, 1, 28, 28)


@pytest.mark.slow
def test_dragan_and_r1_combine_with_any_objective(workdir: Path) -> None:
    proc = run_gan(
        "train",
        "-m",
        "model=mlp",
        "dataset=ring8",
        "loss=hinge,lsgan",
        "loss.penalty=dragan,r1",
        "loss.penalty_weight=1",
        *TWO_STEPS,
        *TINY,
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list((workdir / "multirun").glob("*/*/*/checkpoints/last.pt"))) == 4


@pytest.mark.parametrize(
    "args, words",
    [
        (["model=mlp", "model.cond=concat", "dataset=gauss1d"], "unlabelled"),
        (["loss=hinge", "loss.label_smoothing=0.1"], "real target"),
        ([*GAUSS1D, "loss.feature_matching=true"], "feature_matching"),
    ],
)
def test_invalid_combinations_are_one_clear_error(workdir: Path, args: list[str], words: str) -> None:
    proc = run_gan("train", *args, "train.steps=1", *TINY, cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr
