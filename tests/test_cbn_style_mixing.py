"""BigGAN's class-conditional batch norm (`model.cond=cbn`) and StyleGAN's style mixing (`model.style_mixing`,
`gan sample mode=mix`): what each changes in the networks, and the CLI end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import MNIST, TINY, TWO_STEPS, model_cfg, only_run_dir, run_gan, sample_array

from gan_cli.errors import GanError
from gan_cli.models import build_models, num_classes
from gan_cli.models.layers import ConditionalBatchNorm2d


def test_cbn_conditions_every_norm_layer_of_g_and_pairs_with_the_projection_d() -> None:
    torch.manual_seed(0)
    G, D = build_models(model_cfg(name="dcgan", cond="cbn"), MNIST)
    cbn = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert len(cbn) == 2 and not any(
        type(m) is torch.nn.BatchNorm2d and m.affine for m in G.modules()
    )  # 28 px: two norm layers
    assert G.input.size == 8 and num_classes(G) == 10  # the label is not appended to z: it enters through the norms
    assert D.head.project is not None  # BigGAN's projection discriminator
    z = torch.randn(6, 8)
    G.eval()
    with torch.no_grad():
        a, b = G(z, torch.zeros(6, dtype=torch.long)), G(z, torch.ones(6, dtype=torch.long))
    assert not torch.allclose(a, b)  # the same z, another class: another image
    G.train()
    G(z, torch.arange(6) % 10).square().mean().backward()
    assert G.class_embed.weight.grad.abs().sum() > 0 and all(m.gain.weight.grad.abs().sum() > 0 for m in cbn)


@pytest.mark.parametrize(
    "over, words", [({"name": "mlp"}, "model=mlp"), ({"name": "dcgan", "g_norm": "virtual"}, "g_norm=virtual")]
)
def test_cbn_without_batch_norm_in_g_is_refused(over, words) -> None:
    with pytest.raises(GanError, match=words):
        build_models(model_cfg(cond="cbn", **over), MNIST)


def test_style_mixing_mixes_only_in_training_and_mixed_crosses_over_where_asked() -> None:
    torch.manual_seed(0)
    G, _ = build_models(model_cfg(name="style", style_mixing=1.0), MNIST)
    plain, _ = build_models(model_cfg(name="style"), MNIST)
    plain.load_state_dict(G.state_dict())
    z, z2 = torch.randn(4, 8), torch.randn(4, 8)
    with torch.no_grad():  # the per-pixel noise starts at strength 0: the outputs are deterministic
        G.eval(), plain.eval()
        assert torch.equal(G(z), plain(z))  # no mixing outside training
        assert torch.allclose(G.mixed(z, z2, crossover=len(G.layers)), G(z))  # every layer from z
        assert torch.allclose(G.mixed(z, z2, crossover=0), G(z2))  # every layer from z2
        between = G.mixed(z, z2)
        assert not torch.allclose(between, G(z)) and not torch.allclose(between, G(z2))
        G.train(), plain.train()
        torch.manual_seed(1)
        assert not torch.allclose(G(z), plain(z))  # p = 1: every sample takes a second z's styles after its crossover
    assert G.coarse_layers == 3  # 28 px: layers at 7, 14, 14 px are coarse; the two at 28 px fine


@pytest.mark.parametrize(
    "over, words",
    [
        ({"name": "dcgan", "style_mixing": 0.5}, "model=style"),
        ({"name": "style", "style_mixing": 1.5}, "probability"),
        ({"name": "style", "style_mixing": 0.5, "info_cat": 4}, "InfoGAN"),
    ],
)
def test_bad_style_mixing_is_refused(over, words) -> None:
    with pytest.raises(GanError, match=words):
        build_models(model_cfg(**over), MNIST)


@pytest.mark.slow
def test_cbn_and_style_mixing_train_sample_and_score_from_the_cli(workdir: Path) -> None:
    run_gan("train", "model.cond=cbn", "eval.every=2", "eval.n=200", *TWO_STEPS, *TINY, cwd=workdir, check=True)
    run = only_run_dir(workdir)
    metrics = (run / "metrics.jsonl").read_text()
    assert "cond_acc200_lenet" in metrics  # scored as the class-conditional G it is
    classes = sample_array(workdir, run, mode="classes", nrow=2)
    assert classes.shape == (20, 1, 28, 28) and not np.allclose(
        classes[0], classes[2]
    )  # row 0: class 0, row 1: class 1
    proc = run_gan("sample", f"ckpt={run}", "mode=mix", cwd=workdir)
    assert proc.returncode == 2 and "model=style" in proc.stderr and "Traceback" not in proc.stderr

    style_dir = workdir / "style"
    style_dir.mkdir()
    run_gan("train", "model=style", "model.style_mixing=0.9", *TWO_STEPS, *TINY, cwd=style_dir, check=True)
    run = only_run_dir(style_dir)
    grid = sample_array(style_dir, run, mode="mix", nrow=3)
    assert grid.shape == (16, 1, 28, 28)  # (3 + 1) x (3 + 1): sources on the top row and left column
    assert np.all(grid[0] == -1.0)  # the empty corner
    run_gan("sample", f"ckpt={run}", "mode=mix", cwd=style_dir, check=True)
    assert (run / "samples" / "mix_seed0.png").is_file()
