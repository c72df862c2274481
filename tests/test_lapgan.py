"""model=lapgan: the Laplacian pyramid is exact, the levels learn their own coefficients, and gan sample chains them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import run_gan
from omegaconf import OmegaConf

from gan_cli.data.spec import DataSpec
from gan_cli.models.lapgan import build_lapgan, collapse, laplacian_pyramid, level_sizes, up


@pytest.mark.parametrize(
    ("side", "sizes"), [(28, [28, 14, 7]), (32, [32, 16, 8]), (64, [64, 32, 16, 8]), (56, [56, 28, 14, 7])]
)
def test_the_pyramid_of_an_image_collapses_back_to_it(side: int, sizes: list[int]) -> None:
    assert level_sizes(side) == sizes
    x = torch.rand(4, 3, side, side) * 2 - 1
    pyramid = laplacian_pyramid(x, len(sizes))
    assert [p.shape[-1] for p in pyramid] == sizes
    assert torch.allclose(collapse(pyramid), x, atol=1e-5)
    ramp = torch.linspace(-1, 1, side).expand(
        1, 1, side, side
    )  # a smooth image has (almost) nothing in its band-pass residuals
    assert laplacian_pyramid(ramp, len(sizes))[0][..., 4:-4, 4:-4].abs().max() < 1e-5


def test_the_generator_chains_its_levels_and_the_discriminator_judges_each() -> None:
    spec = DataSpec("mnist5k", (1, 28, 28), 10)
    G, D = build_lapgan(spec, z_dim=16, g_width=4, d_width=4, levels=0, classes=10, dropout=0.0)
    assert G.z_dim == 16 + 28 * 28 + 14 * 14  # the coarse latent, then one noise plane per finer level
    z = torch.randn(6, G.z_dim)
    outputs = G.pyramid_outputs(z)
    assert [o.shape[-1] for o in outputs] == [7, 14, 28]
    assert torch.allclose(
        outputs[1], up(outputs[0]) + G.residuals[1](G.split(z)[1][1], up(outputs[0]), torch.arange(6) % 10)
    )
    assert G(z).shape == (6, 1, 28, 28) and D(G(z)).shape == (6,)
    with pytest.raises(Exception, match="two pyramid levels"):
        build_lapgan(DataSpec("x", (1, 10, 10), 0), 16, 4, 4, 0, 0, 0.0)


def test_generated_level_input_trains_each_level_on_the_chain_and_real_on_the_real_pyramid() -> None:
    """level_input=generated: every D reads whole level images, and a level's loss moves only its own G (the coarser
    image it finishes is detached); real (the paper's, and every checkpoint from before the option): (up(I_{k+1}), h_k)
    pairs."""
    from gan_cli.config import upgrade_saved_config

    spec = DataSpec("mnist5k", (1, 28, 28), 10)
    G, D = build_lapgan(spec, 16, 4, 4, 0, 10, 0.0, level_input="generated")
    _, D_real = build_lapgan(spec, 16, 4, 4, 0, 10, 0.0, level_input="real")
    first_conv = lambda d, k: d.levels_d[k].net[0].in_channels  # noqa: E731
    assert [first_conv(D, k) for k in range(3)] == [1 + 10 + 1] * 3  # the image, the class planes, the batch's spread
    assert [first_conv(D_real, k) for k in range(3)] == [2 + 10 + 1, 2 + 10 + 1, 1 + 10 + 1]

    z, y = torch.randn(6, G.z_dim), torch.arange(6) % 10
    for detach, moved in ((True, {"residuals.0"}), (False, {"residuals.0", "residuals.1", "coarse"})):
        G.zero_grad(set_to_none=True)
        G.pyramid_outputs(z, y, detach=detach)[-1].square().mean().backward()  # a loss on the finest level only
        grads = {
            name.split(".net")[0]  # residuals.0, residuals.1, coarse
            for name, p in G.named_parameters()
            if p.grad is not None and p.grad.abs().sum() > 0
        }
        assert grads == moved, (detach, grads)
    assert D(G(z, y), y).shape == (6,)

    old = {
        "model": {"name": "lapgan"},
        "loss": {"objective": "ns"},
        "optimizer": {"name": "adam"},
        "dataset": {"name": "mnist5k"},
    }
    assert upgrade_saved_config(old)["model"]["level_input"] == "real"


@pytest.mark.parametrize("level_input", ["generated", "real"])
def test_a_pyramid_step_updates_every_level_with_either_level_input(level_input: str) -> None:
    """The training step itself (pyramid_step through the run's loss, optimizers and batcher), with a lazy gradient
    penalty due at the step, in both modes: per-level stats, finite, every level's G and D moved."""
    from helpers import compose_train

    from gan_cli.data import load_dataset
    from gan_cli.data.batching import TensorBatcher
    from gan_cli.losses import build_loss
    from gan_cli.models import build_models
    from gan_cli.optimizers import build_optimizers
    from gan_cli.training.pyramid import pyramid_step

    cfg = compose_train(
        "model=lapgan", f"model.level_input={level_input}", "model.g_width=4", "model.d_width=4", "loss=wgan_gp",
        "loss.penalty_every=2", "dataset.limit=64",
    )  # fmt: skip
    data = load_dataset(cfg.dataset, seed=0)
    torch.manual_seed(0)
    G, D = build_models(cfg.model, data.spec)
    opt_g, opt_d = build_optimizers(cfg.optimizer, G, D)
    before = {name: p.detach().clone() for name, p in [*G.named_parameters(), *D.named_parameters()]}
    stats = pyramid_step(
        G,
        D,
        build_loss(cfg.loss),
        opt_g,
        opt_d,
        TensorBatcher(data, 16, torch.device("cpu"), 0),
        torch.device("cpu"),
        step=2,
    )
    assert {f"loss/D/level_{k}" for k in range(3)} <= set(stats) and all(torch.isfinite(v) for v in stats.values())
    moved = {
        name.split(".net")[0]
        for name, p in [*G.named_parameters(), *D.named_parameters()]
        if not torch.equal(p, before[name])
    }
    assert moved >= {"coarse", "residuals.0", "residuals.1", "levels_d.0", "levels_d.1", "levels_d.2"}, moved


@pytest.mark.slow
def test_the_levels_learn_their_coefficients_and_sample_chains_them(workdir: Path, mnist5k) -> None:
    from gan_cli.models import build_models
    from gan_cli.runtime import load_generator

    run = workdir / "lap"
    args = [
        "model=lapgan",
        "model.g_width=8",
        "model.d_width=8",
        "model.ema=0",
        "train.steps=300",
        "train.batch_size=32",
        "train.threads=1",
        "train.log_every=50",
        "train.sample_every=300",
        "optimizer.lr=5e-4",
        f"hydra.run.dir={run}",
    ]
    proc = run_gan("train", *args, cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run)).Reload()
    assert {"loss/D", "D(G(z))", "loss/D/level_0", "loss/G/level_2", "D(x)/level_1", "D(G(z))/level_2"} <= set(
        events.Tags()["scalars"]
    )  # per level, and the means

    trained, spec, ckpt, _ = load_generator(str(run), torch.device("cpu"), ema=False)
    torch.manual_seed(0)
    untrained, _ = build_models(OmegaConf.create(ckpt["config"]["model"]), spec)
    real = mnist5k.x[:512]
    y = mnist5k.y[:512]
    pyramid = laplacian_pyramid(real, 3)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(512, trained.z_dim, generator=gen)

    def gaps(G) -> tuple[float, float]:
        """(distance of the mean coarse image to the real one's, |std of level 0's residual - the real residual's|)."""
        with torch.no_grad():
            G.eval()
            z0, planes = G.split(z)
            coarse = G.coarse(z0, y)
            chain = up(
                G.pyramid_outputs(z, y)[1]
            )  # given the chain's own 14x14 image, as in training (level_input=generated)
            residual = G.residuals[0](planes[0], chain, y)
        return float((coarse.mean(0) - pyramid[2].mean(0)).abs().mean()), abs(float(residual.std() - pyramid[0].std()))

    (coarse_before, residual_before), (coarse_after, residual_after) = gaps(untrained), gaps(trained)
    assert coarse_after < coarse_before / 2, (coarse_before, coarse_after)
    assert residual_after < residual_before / 2, (residual_before, residual_after)

    out = workdir / "pyramid.pt"
    drawn = run_gan("sample", f"ckpt={run}", "mode=pyramid", "n=5", f"out={out}", cwd=workdir)
    assert drawn.returncode == 0, drawn.stderr
    assert torch.load(out, weights_only=True).shape == (15, 1, 28, 28)  # 5 rows x 3 levels, each at full size
