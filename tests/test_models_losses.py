"""Every model x loss trains on tiny widths; the losses are the textbook formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import compose_train
from gan_cli.data import DataSpec, LoadedData
from gan_cli.data.batching import TensorBatcher
from gan_cli.errors import GanError
from gan_cli.losses import OBJECTIVES, build_loss, gradient_penalty
from gan_cli.models import build_models
from gan_cli.train import build_optimizers, train_step

LOSSES = ["minimax", "ns", "wgan", "wgan_gp", "lsgan", "hinge"]
SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32), "celeba64": (3, 64, 64), "toy2d": (2,)}
CASES = [("mlp", "mnist"), ("mlp", "toy2d"), ("dcgan", "mnist"), ("dcgan", "cifar"), ("dcgan", "celeba64")]


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("model_name,shape_name", CASES)
def test_every_model_and_loss_trains(model_name: str, shape_name: str, loss_name: str) -> None:
    torch.manual_seed(0)
    cfg = compose_train(f"model={model_name}", f"loss={loss_name}", "model.g_width=4", "model.d_width=4", "model.z_dim=8", "loss.n_critic=2")
    shape = SHAPES[shape_name]
    spec = DataSpec(shape_name, shape, 0)
    data = LoadedData(spec, x=torch.rand(32, *shape) * 2 - 1)
    G, D = build_models(cfg.model, spec)
    loss = build_loss(cfg.loss)
    opt_g, opt_d = build_optimizers(cfg.optimizer, G, D)
    g_before = [p.detach().clone() for p in G.parameters()]
    stats = train_step(G, D, loss, opt_g, opt_d, TensorBatcher(data, 4, torch.device("cpu"), 0), torch.device("cpu"))
    assert G(torch.randn(3, cfg.model.z_dim)).shape == (3, *shape)
    assert D(torch.rand(3, *shape)).shape == (3,)
    assert all(torch.isfinite(v).all() for v in stats.values()), stats
    assert any(not torch.equal(a, b) for a, b in zip(g_before, G.parameters())), "G did not move"
    if loss.objective.outputs_probability:
        assert 0.0 <= float(stats["D(x)"]) <= 1.0
    if loss.clip is not None:
        assert max(p.abs().max().item() for p in D.parameters()) <= loss.clip + 1e-7


def test_dcgan_on_vector_data_is_a_clear_error() -> None:
    cfg = compose_train("model=dcgan")
    with pytest.raises(GanError, match="model=dcgan needs images.*model=mlp"):
        build_models(cfg.model, DataSpec("ring8", (2,), 8))


def test_dcgan_rejects_unsupported_sizes() -> None:
    cfg = compose_train("model=dcgan")
    with pytest.raises(GanError, match="dataset.image_size"):
        build_models(cfg.model, DataSpec("odd", (3, 25, 25), 0))


def test_bce_family_matches_torch_bce() -> None:
    real, fake = torch.randn(16), torch.randn(16)
    expected = F.binary_cross_entropy_with_logits(real, torch.ones(16)) + F.binary_cross_entropy_with_logits(fake, torch.zeros(16))
    for name in ("minimax", "ns"):
        assert torch.allclose(OBJECTIVES[name]().d_loss(real, fake), expected, atol=1e-6)
    # minimax G minimises E log(1 - D(G(z))); ns G minimises -E log D(G(z))
    assert torch.allclose(OBJECTIVES["minimax"]().g_loss(fake), torch.log1p(-torch.sigmoid(fake)).mean(), atol=1e-6)
    assert torch.allclose(OBJECTIVES["ns"]().g_loss(fake), -torch.log(torch.sigmoid(fake)).mean(), atol=1e-6)


def test_jsd_estimate_is_zero_for_a_clueless_d_and_log2_for_a_perfect_one() -> None:
    ns = OBJECTIVES["ns"]()
    zeros = torch.zeros(8)
    d_loss = ns.d_loss(zeros, zeros)
    assert math.isclose(float(d_loss), math.log(4), rel_tol=1e-6)  # V = -log 4 at D = 1/2
    assert abs(float(ns.estimate(zeros, zeros, d_loss))) < 1e-6
    real, fake = torch.full((8,), 30.0), torch.full((8,), -30.0)
    assert math.isclose(float(ns.estimate(real, fake, ns.d_loss(real, fake))), math.log(2), rel_tol=1e-5)


def test_gradient_penalty_is_zero_for_unit_slope_and_one_for_slope_two() -> None:
    real, fake = torch.randn(16, 3), torch.randn(16, 3)
    unit = torch.tensor([0.6, 0.8, 0.0])
    assert float(gradient_penalty(lambda x: x @ unit, real, fake)) < 1e-10
    assert math.isclose(float(gradient_penalty(lambda x: x @ (2 * unit), real, fake)), 1.0, rel_tol=1e-5)


@pytest.mark.parametrize(
    "override,message",
    [("loss.n_critic=0", "loss.n_critic=0"), ("loss.clip=-1", "loss.clip=-1"), ("loss.penalty=zz", "Unknown loss.penalty .zz.. Allowed: .*gp")],
)
def test_bad_loss_options_are_named(override: str, message: str) -> None:
    with pytest.raises(GanError, match=message):
        build_loss(compose_train(override).loss)
