"""model=progan: stages, the fade-in (a new block at alpha 0 changes nothing), equalized learning rate, the schedule in a
real run (TensorBoard's progress/* tags), bit-exact resume mid-fade, and gan sample from any stage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import MNIST, TINY, assert_same_training_state, compose_train, load_last, only_run_dir, run_gan

from gan_cli.models.progan import (
    EqualizedConv2d,
    EqualizedLinear,
    Growth,
    build_progan,
    downscale,
    stage_sides,
    stage_widths,
    upscale,
)

# 1 step at 7 px, then per stage 3 fade steps (alpha 0, 1/3, 2/3) and 1 stable step: 14 px fades in over steps 2-4, 28 px over 6-8
GROW_FAST = ["experiment=progan", "model.g_width=4", "model.d_width=4", "model.fade_steps=3", "model.stable_steps=1"]


@pytest.mark.parametrize(
    ("side", "sides"), [(28, [7, 14, 28]), (32, [4, 8, 16, 32]), (64, [4, 8, 16, 32, 64]), (12, [6, 12])]
)
def test_growing_starts_at_the_smallest_side_halving_reaches(side: int, sides: list[int]) -> None:
    assert stage_sides(side) == sides
    assert stage_widths(16, len(sides))[-1] == 16 and stage_widths(16, len(sides))[0] == 16 * min(
        8, 2 ** (len(sides) - 1)
    )


def test_alpha_rises_linearly_over_the_fade_then_holds() -> None:
    growth = Growth(stages=3, fade=4, stable=2)
    stages = [growth.at(step) for step in range(1, 16)]
    assert stages[:2] == [(0, 1.0), (0, 1.0)]
    assert stages[2:8] == [(1, 0.0), (1, 0.25), (1, 0.5), (1, 0.75), (1, 1.0), (1, 1.0)]
    assert stages[8:12] == [(2, 0.0), (2, 0.25), (2, 0.5), (2, 0.75)]
    assert stages[12:] == [(2, 1.0)] * 3 and growth.grown_at() == 13
    assert Growth(3, 0, 5).at(6) == (1, 1.0)  # no fade: the block is switched in whole


@pytest.mark.parametrize("classes", [0, 10], ids=["unconditional", "projection"])
@pytest.mark.parametrize("stage", [1, 2])
def test_a_new_block_at_alpha_zero_changes_neither_network(stage: int, classes: int) -> None:
    """G: the new stage at alpha 0 draws the previous stage's image, upscaled. D: its score of an image at the new side is
    the previous D's score of the image halved."""
    torch.manual_seed(0)
    G, D = build_progan(MNIST, 16, 4, 4, classes)
    z = torch.randn(6, 16)
    y = torch.arange(6) if classes else None
    G.set_progress(stage - 1, 1.0)
    before = G(z, y)
    G.set_progress(stage, 0.0)
    after = G(z, y)
    side = stage_sides(28)[stage]
    assert before.shape[-1] == side // 2 and after.shape[-1] == side
    assert torch.equal(after, upscale(before, side))
    G.set_progress(stage, 0.5)
    assert not torch.allclose(G(z, y), after)  # the new block does show once alpha rises

    x = torch.rand(6, 1, side, side) * 2 - 1
    D.set_progress(stage, 0.0)
    new = D(x, y)
    D.set_progress(stage - 1, 1.0)
    torch.testing.assert_close(new, D(F.avg_pool2d(x, 2), y), rtol=1e-5, atol=1e-5)
    D.set_progress(stage, 0.0)
    torch.testing.assert_close(
        D(upscale(x, 28), y), new, rtol=1e-5, atol=1e-5
    )  # a full-size image is pooled to the stage's side
    if classes:  # the projection term: the same image judged as another class scores differently
        assert not torch.allclose(D(x, (y + 1) % classes), new)


def test_in_eval_mode_g_upscales_to_the_data_side_and_real_batches_fade_like_g() -> None:
    G, D = build_progan(MNIST, 16, 4, 4, 0)
    z = torch.randn(3, 16)
    for net in (G, D):
        net.set_progress(1, 0.25)
    small = G(z)
    assert small.shape == (3, 1, 14, 14)
    assert torch.equal(G.eval()(z), upscale(small, 28))
    real = torch.rand(3, 1, 28, 28)
    half = downscale(real, 14)
    torch.testing.assert_close(D.real_view(real), 0.75 * upscale(F.avg_pool2d(half, 2), 14) + 0.25 * half)


def test_equalized_layers_store_unit_weights_and_scale_them_by_he_constant_at_run_time() -> None:
    """Karras et al. 4.1: w_hat = w * sqrt(2 / fan_in) in every forward, with w ~ N(0, 1); initialisation leaves them alone."""
    from gan_cli.models import build_models

    torch.manual_seed(0)
    conv, dense = EqualizedConv2d(64, 32, 3), EqualizedLinear(256, 128)
    x, v = torch.randn(2, 64, 5, 5), torch.randn(2, 256)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * math.sqrt(2 / (64 * 9)), conv.bias, padding=1))
    torch.testing.assert_close(dense(v), F.linear(v, dense.weight * math.sqrt(2 / 256), dense.bias))
    assert abs(float(conv.weight.detach().std()) - 1) < 0.05 and abs(float(dense.weight.detach().std()) - 1) < 0.05
    G, _ = build_models(
        compose_train("model=progan").model, MNIST
    )  # the base init_std (N(0, 0.02)) is not applied to them
    assert abs(float(G.blocks[0][0].weight.detach().std()) - 1) < 0.1
    # the effect the paper is after: a unit-variance input keeps about unit variance through conv + leaky ReLU at any width
    for width in (8, 128):
        layer = EqualizedConv2d(width, width, 3)
        h = torch.randn(64, width, 8, 8)
        with torch.no_grad():
            out = F.leaky_relu(layer(h), 0.2)
        assert 0.5 < float(out.square().mean()) < 1.5


def test_the_drift_term_is_epsilon_times_the_mean_squared_real_output(tmp_path: Path) -> None:
    from gan_cli.losses import build_loss

    loss = build_loss(compose_train("experiment=progan").loss)
    real = torch.tensor([1.0, -2.0, 3.0])
    terms = loss.extra.d_terms(torch.nn.Linear(1, 1), None, {}, {}, None, torch.zeros(3, 1), real)
    torch.testing.assert_close(terms["loss/drift"], torch.tensor(0.001 * (1 + 4 + 9) / 3))


@pytest.mark.slow
def test_a_run_grows_logs_its_progress_resumes_mid_fade_exactly_and_samples_any_stage(workdir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    straight, split = workdir / "straight", workdir / "split"
    straight.mkdir(), split.mkdir()
    args = [*GROW_FAST, *TINY, "train.log_every=1", "train.ckpt_every=100", "train.sample_every=100", "train.threads=1"]
    run_gan("train", "train.steps=7", *args, cwd=straight, check=True)
    events = EventAccumulator(str(only_run_dir(straight))).Reload()
    sides = [e.value for e in events.Scalars("progress/resolution")]
    alphas = [round(e.value, 4) for e in events.Scalars("progress/alpha")]
    assert sides == [7, 14, 14, 14, 14, 28, 28]
    assert alphas == [1, 0, 0.3333, 0.6667, 1, 0, 0.3333]
    samples = only_run_dir(straight) / "samples" / "step_000007.png"
    from PIL import Image

    assert (
        Image.open(samples).size[0] >= 8 * 28
    )  # the progress grid shows 28 px images, upscaled from the 28 px stage's 14 px fade

    run_gan("train", "train.steps=3", *args, cwd=split, check=True)  # stops mid-fade (alpha 1/3 of 14 px)
    run = only_run_dir(split)
    assert load_last(run)["models"]["G"]["_extra_state"] == {"stage": 1, "alpha": 1 / 3}
    for upscaled, side in (
        ("false", 14),
        ("true", 28),
    ):  # gan sample from the mid-fade checkpoint: its own side, or the data's
        out = workdir / f"s{side}.npy"
        proc = run_gan("sample", f"ckpt={run}", "n=5", f"out={out}", f"upscale={upscaled}", cwd=workdir, check=True)
        assert np.load(out).shape == (5, 1, side, side) and f"{side}x{side} px" in proc.stdout

    resumed = run_gan("train", f"resume={run}", "train.steps=7", cwd=split, check=True)
    assert "step 7/7" in resumed.stdout
    assert_same_training_state(load_last(only_run_dir(straight)), load_last(run))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=progan", "dataset=ring8"], "model=progan grows convolutional G and D over image sides"),
        (
            ["model=progan", "model.cond=concat"],
            "model.cond=concat: model=progan takes the class through a projection D",
        ),
        (["model=progan", "model.d_norm=spectral"], "model.d_norm=spectral: model=progan is the paper's network"),
        (["model=dcgan", "model.fade_steps=10"], "model.fade_steps=10 sets how model=progan grows"),
        (["model=progan", "model.fade_steps=0", "model.stable_steps=0"], "must be >= 0 and not both 0"),
        (["model=progan", "dist.nproc_per_node=2"], "model=progan trains in one process"),
    ],
    ids=["points", "concat", "spectral", "dcgan-fade", "no-steps", "ddp"],
)
def test_what_progan_does_not_do_is_refused_in_one_paragraph_before_a_run_directory(
    workdir: Path, args: list[str], message: str
) -> None:
    proc = run_gan("train", *args, "train.steps=2", cwd=workdir)
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (workdir / "outputs").exists()
