"""Every model x loss trains on tiny widths; the losses are the textbook formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import compose_train

from gan_cli.data import DataSpec, LoadedData
from gan_cli.data.batching import TensorBatcher
from gan_cli.errors import GanError
from gan_cli.losses import OBJECTIVES, build_loss, gradient_penalty
from gan_cli.models import build_models
from gan_cli.optimizers import build_optimizers
from gan_cli.training.step import train_step

LOSSES = ["minimax", "ns", "wgan", "wgan_gp", "lsgan", "hinge"]
SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32), "celeba64": (3, 64, 64), "toy2d": (2,)}
CASES = [("mlp", "mnist"), ("mlp", "toy2d"), ("dcgan", "mnist"), ("dcgan", "cifar"), ("dcgan", "celeba64")]


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("model_name,shape_name", CASES)
def test_every_model_and_loss_trains(model_name: str, shape_name: str, loss_name: str) -> None:
    torch.manual_seed(0)
    cfg = compose_train(
        f"model={model_name}",
        f"loss={loss_name}",
        "model.g_width=4",
        "model.d_width=4",
        "model.z_dim=8",
        "loss.n_critic=2",
    )
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
    expected = F.binary_cross_entropy_with_logits(real, torch.ones(16)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros(16)
    )
    for name in ("minimax", "ns"):
        assert torch.allclose(OBJECTIVES.get(name).build(None).d_loss(real, fake), expected, atol=1e-6)
    # minimax G minimises E log(1 - D(G(z))); ns G minimises -E log D(G(z))
    assert torch.allclose(
        OBJECTIVES.get("minimax").build(None).g_loss(fake), torch.log1p(-torch.sigmoid(fake)).mean(), atol=1e-6
    )
    assert torch.allclose(
        OBJECTIVES.get("ns").build(None).g_loss(fake), -torch.log(torch.sigmoid(fake)).mean(), atol=1e-6
    )


def test_jsd_estimate_is_zero_for_a_clueless_d_and_log2_for_a_perfect_one() -> None:
    ns = OBJECTIVES.get("ns").build(None)
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
    [
        ("loss.n_critic=0", "loss.n_critic=0"),
        ("loss.clip=-1", "loss.clip=-1"),
    ],  # unknown names are refused while composing (test_config)
)
def test_bad_loss_options_are_named(override: str, message: str) -> None:
    with pytest.raises(GanError, match=message):
        build_loss(compose_train(override).loss)


def test_mlp_d_norm_batch_puts_batchnorm_in_the_mlp_discriminator() -> None:
    spec = DataSpec("toy2d", (2,), 0)
    for norm, layer in (("batch", torch.nn.BatchNorm1d), ("layer", torch.nn.LayerNorm)):
        _, D = build_models(compose_train("model=mlp", f"model.d_norm={norm}").model, spec)
        assert sum(isinstance(m, layer) for m in D.modules()) == 3, norm
    _, D = build_models(compose_train("model=mlp", "model.d_norm=none").model, spec)
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.LayerNorm)) for m in D.modules())


def test_init_std_leaves_adain_its_own_equalised_init() -> None:
    from gan_cli.models.layers import AdaIN

    torch.manual_seed(0)
    G, _ = build_models(compose_train("model=style", "model.init_std=0.3").model, DataSpec("mnist", (1, 28, 28), 0))
    adains = [m for m in G.modules() if isinstance(m, AdaIN)]
    weights = torch.cat([m.style.weight.detach().flatten() for m in adains])
    assert adains and abs(float(weights.std()) - AdaIN.INIT_STD) < 0.005, (
        "AdaIN keeps its own (equalised) init, not N(0, init_std)"
    )
    assert all(not m.style.bias.detach().any() for m in adains)
    convs = [m for m in G.modules() if isinstance(m, torch.nn.Conv2d)]
    assert abs(float(torch.cat([c.weight.detach().flatten() for c in convs]).std()) - 0.3) < 0.03, (
        "the other layers get N(0, init_std)"
    )


def test_feature_matching_compares_with_real_features_of_the_updated_discriminator() -> None:
    """Salimans et al.: G matches E f(x) under the D it is judged by, i.e. after D's update in the same step."""
    from gan_cli.models.layers import discriminate

    torch.manual_seed(0)
    cfg = compose_train(
        "model=mlp", "loss=ns", "loss.feature_matching=true", "model.dropout=0", "model.g_width=8", "model.d_width=8"
    )
    spec = DataSpec("toy2d", (2,), 0)
    data = LoadedData(spec, x=torch.randn(16, 2))
    G, D = build_models(cfg.model, spec)
    loss = build_loss(cfg.loss)
    opt_g, opt_d = build_optimizers(cfg.optimizer, G, D)
    seen = {}
    original = loss.extra.g_adversarial

    def spy(obj, g_logits, g_ex, real_ex):
        seen["real"] = real_ex["features"].detach().clone()
        return original(obj, g_logits, g_ex, real_ex)

    loss.extra.g_adversarial = spy
    before = discriminate(D, data.x, None)[1]["features"].detach().clone()
    train_step(G, D, loss, opt_g, opt_d, TensorBatcher(data, 16, torch.device("cpu"), 0), torch.device("cpu"))
    after = discriminate(D, data.x, None)[1]["features"].detach()
    # the batch is the whole (shuffled) dataset: compare the feature means, which is what the loss uses
    assert torch.allclose(seen["real"].mean(0), after.mean(0), atol=1e-6)
    assert not torch.allclose(before.mean(0), after.mean(0), atol=1e-6), "D's update moved its features"
