"""loss.info_schedule: InfoGAN's weight decays to 0 at train.steps by the lr schedules' shape.

Checked against its formula (info_weight * lr_factor(schedule, step - 1, steps)) in the loss terms G and Q are
trained with, in TensorBoard through the real `gan train`, and across a resume, which must match a straight run
bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import TOY_SIZES, assert_same_training_state, compose_train, only_run_dir, resume_from_midway, run_gan
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_cli.data import DataSpec
from gan_cli.errors import GanError
from gan_cli.losses import build_loss
from gan_cli.models import build_models, latent_layout, sample_latent
from gan_cli.models.layers import discriminate
from gan_cli.rundir import resume_changes
from gan_cli.schedules import lr_factor

# the toy case on grid25 with a 5-way InfoGAN code
INFO_TOY = ["model=mlp", "dataset=grid25", *TOY_SIZES, "model.info_cat=5", "loss.info_weight=0.5"]


def _info_terms(schedule: str, step: int, total: int) -> tuple[float, float]:
    """(Q's term in D's loss, G's term) for one fixed batch at generator step `step` of `total`."""
    cfg = compose_train(*INFO_TOY, f"loss.info_schedule={schedule}")
    torch.manual_seed(0)
    G, D = build_models(cfg.model, DataSpec("grid25", (2,), 25))
    loss, layout = build_loss(cfg.loss), latent_layout(G)
    loss.extra.at_step(step, total)
    z = sample_latent(G, 16, torch.device("cpu"))
    logits, ex = discriminate(D, G(z), None)
    d_terms = loss.extra.d_terms(D, layout, ex, ex, None, z, logits)
    g_terms = loss.extra.g_terms(G, layout, ex, None, z)
    return float(d_terms["loss/info"].detach()), float(g_terms["loss/info_G"].detach())


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_info_terms_follow_the_schedule(schedule: str) -> None:
    """Both InfoGAN terms are the constant run's times lr_factor(step - 1): full at step 1, half midway, 0 past the end."""
    full = _info_terms("constant", 7, 10)
    assert full[0] > 0 and full[1] > 0
    for step, total in ((1, 10), (6, 10), (10, 10), (11, 10)):
        factor = lr_factor(schedule, step - 1, total)
        got = _info_terms(schedule, step, total)
        assert got == pytest.approx((full[0] * factor, full[1] * factor), rel=1e-6, abs=1e-9), (schedule, step)
    assert lr_factor(schedule, 5, 10) == pytest.approx(0.5)  # step 6 of 10: half the weight
    assert _info_terms(schedule, 11, 10) == (0.0, 0.0)


def test_only_a_moving_weight_is_logged() -> None:
    constant, cosine = (
        build_loss(compose_train(*INFO_TOY, f"loss.info_schedule={s}").loss).extra for s in ("constant", "cosine")
    )
    constant.at_step(5, 10), cosine.at_step(6, 10)
    assert constant.scheduled() == {} and cosine.scheduled() == {"weight/info": pytest.approx(0.25)}


def test_bad_info_schedule_names_the_value() -> None:
    """build_loss checks the value itself, for a config that did not come through the CLI's schema."""
    cfg = OmegaConf.create({**OmegaConf.to_container(compose_train(*INFO_TOY).loss), "info_schedule": "step"})
    with pytest.raises(GanError, match=r"loss.info_schedule.*'step'.*constant"):
        build_loss(cfg)


def test_cli_bad_info_schedule_exits_2(tmp_path: Path) -> None:
    proc = run_gan("train", *INFO_TOY, "loss.info_schedule=exp", "train.steps=2", cwd=tmp_path)
    assert proc.returncode == 2 and "'exp'" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.pt"))


def test_a_decaying_info_weight_forbids_extending_the_run() -> None:
    saved = OmegaConf.to_container(
        compose_train(*INFO_TOY, "loss.info_schedule=cosine", "optimizer.schedule=constant", "train.steps=8")
    )
    now = OmegaConf.to_container(
        compose_train(*INFO_TOY, "loss.info_schedule=cosine", "optimizer.schedule=constant", "train.steps=16")
    )
    (change,) = resume_changes(saved, now)
    assert change.startswith("train.steps: 8 -> 16") and "loss.info_schedule=cosine" in change
    constant = OmegaConf.to_container(compose_train(*INFO_TOY, "optimizer.schedule=constant", "train.steps=16"))
    assert resume_changes({**constant, "train": {**constant["train"], "steps": 8}}, constant) == []


@pytest.mark.slow
def test_cli_logs_the_weight_and_resumes_exactly(tmp_path: Path) -> None:
    """weight/info at step s is info_weight * lr_factor(linear, s - 1, 8); stopped at step 4 and resumed, every
    weight, optimizer state and the RNG equal the straight run's."""
    a, b = resume_from_midway(
        tmp_path, [*INFO_TOY, "loss.info_schedule=linear", "train.log_every=1", "train.ckpt_every=4"]
    )
    assert_same_training_state(a, b)
    acc = EventAccumulator(str(only_run_dir(tmp_path)), size_guidance={"scalars": 0})  # the straight run
    acc.Reload()
    logged = {e.step: e.value for e in acc.Scalars("weight/info")}
    assert sorted(logged) == list(range(1, 9))
    for step, value in logged.items():
        assert value == pytest.approx(0.5 * lr_factor("linear", step - 1, 8), rel=1e-6), step
