"""Layer- and loss-level behaviour of the GAN variants (in process, tiny tensors)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import MNIST, model_cfg
from omegaconf import OmegaConf
from torch import nn

from gan_cli.config import group_defaults
from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError
from gan_cli.losses import OBJECTIVES, PENALTIES, ExtraTerms, build_loss, mutual_info_bound, orthogonal_regularisation
from gan_cli.models import build_models, latent_layout, sample_latent
from gan_cli.models.layers import (
    AdaIN,
    LatentLayout,
    MinibatchDiscrimination,
    MinibatchStdDev,
    SelfAttention,
    apply_spectral_norm,
    discriminate,
)

CIFAR = DataSpec("cifar10", (3, 32, 32), 10)
UNLABELLED = DataSpec("image_folder", (3, 32, 32), 0)


def loss_cfg(**over):
    return OmegaConf.merge(group_defaults("loss"), {"objective": "ns"}, over)


def test_spectral_norm_keeps_the_largest_singular_value_near_one() -> None:
    torch.manual_seed(0)
    layer = apply_spectral_norm(nn.Linear(64, 32))
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(10.0)  # sigma far from 1 before normalisation
        raw_sigma = torch.linalg.matrix_norm(layer.parametrizations.weight.original, ord=2)
        for _ in range(30):  # power iterations run in training-mode forwards
            layer(torch.randn(4, 64))
    sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2)
    assert raw_sigma > 5
    assert abs(sigma.item() - 1.0) < 0.05


def test_self_attention_with_zero_gamma_is_the_identity() -> None:
    torch.manual_seed(0)
    block = SelfAttention(16)
    x = torch.randn(2, 16, 7, 7)
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(0.5)
    assert not torch.allclose(block(x), x)


def test_adain_normalises_each_channel_then_applies_the_style() -> None:
    torch.manual_seed(0)
    adain = AdaIN(3, 5)
    x = torch.randn(2, 3, 8, 8) * 4 + 3
    w = torch.randn(2, 5)
    with torch.no_grad():
        adain.style.weight.zero_()  # no style at all: plain instance norm
    out = adain(x, w)
    assert torch.allclose(out.mean((2, 3)), torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(out.std((2, 3), unbiased=False), torch.ones(2, 3), atol=1e-3)
    with torch.no_grad():
        adain.style.bias.copy_(
            torch.tensor([1.0, 0.0, -0.5, 2.0, -1.0, 0.5])
        )  # scales 1+(1, 0, -0.5), shifts (2, -1, 0.5)
    out = adain(x, w)
    assert torch.allclose(out.mean((2, 3)), torch.tensor([2.0, -1.0, 0.5]).expand(2, 3), atol=1e-4)
    assert torch.allclose(out.std((2, 3), unbiased=False), torch.tensor([2.0, 1.0, 0.5]).expand(2, 3), atol=1e-3)


def test_mutual_information_bound_grows_as_q_recovers_the_codes() -> None:
    torch.manual_seed(0)
    layout = LatentLayout(4, n_cat=10, n_cont=2)
    z = layout.sample(512, "cpu")
    cat, cont = layout.codes(z)
    bounds = []
    for skill in (0.0, 0.5, 1.0):  # Q from guessing to reading the codes off
        q = {"q_cat": skill * 20 * F.one_hot(cat, 10).float(), "q_cont": skill * cont}
        bounds.append(mutual_info_bound(q, z, layout).item())
    assert bounds[0] < bounds[1] < bounds[2]
    assert bounds[2] == pytest.approx(math.log(10) + 2 * (math.log(2) - 0.5 * math.log(2 * math.pi)), abs=1e-3)


def test_latent_layout_puts_valid_codes_in_z() -> None:
    layout = LatentLayout(5, n_cat=3, n_cont=2)
    z = layout.sample(100, "cpu")
    assert z.shape == (100, 10)
    assert torch.equal(z[:, 5:8].sum(1), torch.ones(100))
    assert z[:, 8:].abs().max() <= 1


def test_minibatch_layers_see_a_collapsed_batch() -> None:
    torch.manual_seed(0)
    same = torch.randn(1, 6).repeat(5, 1)
    varied = torch.randn(5, 6)
    std = MinibatchStdDev(6)
    assert std(same)[:, -1].abs().max() < 1e-3 < std(varied)[:, -1].min()
    disc = MinibatchDiscrimination(6, kernels=4, kernel_dim=3)
    assert torch.allclose(disc(same)[:, 6:], torch.full((5, 4), 4.0))  # each sample matches the 4 others exactly
    assert disc(varied)[:, 6:].max() < 4.0


def test_r1_and_dragan_penalties_on_a_linear_critic() -> None:
    w = torch.tensor([3.0, 4.0])  # ||grad D|| = 5 everywhere
    d_fn = lambda x: x @ w  # noqa: E731
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    assert PENALTIES["r1"](d_fn, real, fake).item() == pytest.approx(25.0)
    assert PENALTIES["dragan"](d_fn, real, fake).item() == pytest.approx(16.0)
    assert PENALTIES["gp"](d_fn, real, fake).item() == pytest.approx(16.0)


def test_one_sided_label_smoothing_moves_the_optimal_real_output_to_one_minus_s() -> None:
    loss = build_loss(loss_cfg(label_smoothing=0.2))
    logit = torch.tensor([math.log(0.8 / 0.2)], requires_grad=True)  # sigmoid = 0.8
    loss.objective.d_loss(logit, torch.tensor([-50.0])).backward()
    assert abs(logit.grad.item()) < 1e-6
    plain = OBJECTIVES.get("ns").build(None)
    assert plain.d_loss(torch.tensor([2.0]), torch.tensor([-1.0])) < loss.objective.d_loss(
        torch.tensor([2.0]), torch.tensor([-1.0])
    )


def test_orthogonal_regularisation_is_zero_for_orthogonal_rows() -> None:
    layer = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        layer.weight.copy_(
            torch.linalg.qr(torch.randn(4, 4))[0] * 3
        )  # orthogonal rows of any norm: BigGAN leaves norms free
    assert orthogonal_regularisation(layer).item() == pytest.approx(0.0, abs=1e-4)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    assert orthogonal_regularisation(layer).item() == pytest.approx(12 * 4.0**2)  # 12 off-diagonal dot products of 4


def test_historical_averaging_pulls_towards_past_parameters_and_survives_a_checkpoint() -> None:
    terms = ExtraTerms(hist_weight=1.0)
    layer = nn.Linear(2, 1)
    assert terms._historical(layer, "D").item() == 0.0
    with torch.no_grad():
        layer.weight.add_(1.0)
    after = terms._historical(layer, "D")  # mean of (theta, theta + 1) is 0.5 away in each of 2 weights
    assert after.item() == pytest.approx(2 * 0.25)
    restored = ExtraTerms(hist_weight=1.0)
    restored.load_state_dict(terms.state_dict())
    assert restored.history["D"]["count"] == 2


VARIANTS = [
    {"name": "mlp", "cond": "concat"},
    {"name": "mlp", "cond": "projection", "d_norm": "spectral", "minibatch": "mbdisc"},
    {"name": "dcgan", "cond": "acgan", "attention": 14, "g_spectral": True, "d_norm": "spectral"},
    {"name": "dcgan", "info_cat": 10, "info_cont": 2, "minibatch": "mbstd"},
    {"name": "style", "cond": "projection", "attention": 7},
]


@pytest.mark.parametrize("over", VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_every_variant_builds_and_conditions_on_labels(over) -> None:
    torch.manual_seed(0)
    G, D = build_models(model_cfg(**over), MNIST)
    y = torch.tensor([3, 3, 7])
    z = sample_latent(G, 3, "cpu")
    assert z.shape == (3, latent_layout(G).size)
    x = G(z, y)
    logits, extras = discriminate(D, x, y)
    assert x.shape == (3, 1, 28, 28) and logits.shape == (3,)
    assert extras["features"].shape[0] == 3
    if over.get("cond", "none") != "none":
        G.eval()  # a conditional G's output depends on the label
        assert not torch.allclose(G(z, y), G(z, torch.tensor([0, 1, 2])))


def test_style_generator_sizes_itself_from_the_data() -> None:
    G, _ = build_models(model_cfg(name="style"), CIFAR)
    assert G(sample_latent(G, 2, "cpu")).shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    "over, spec, words",
    [
        ({"name": "dcgan", "cond": "concat"}, UNLABELLED, "unlabelled"),
        ({"name": "mlp", "attention": 14}, MNIST, "feature maps"),
        ({"name": "dcgan", "attention": 9}, MNIST, "Allowed: 7, 14"),
        ({"name": "dcgan", "info_cat": 1}, MNIST, "info_cat"),
        ({"name": "mlp", "g_norm": "virtual"}, MNIST, "BatchNorm layers"),
    ],
)
def test_invalid_model_options_are_clear_errors(over, spec, words) -> None:
    """Combinations the models refuse (a name outside a choice key's values is refused by the schema: test_config)."""
    with pytest.raises(GanError, match=words):
        build_models(model_cfg(**over), spec)


@pytest.mark.parametrize(
    "over, words",
    [
        ({"objective": "hinge", "label_smoothing": 0.1}, "real target"),
        ({"label_smoothing": 1.5}, "must be in"),
        ({"ortho_weight": -1.0}, "ortho_weight"),
    ],
)
def test_invalid_loss_options_are_clear_errors(over, words) -> None:
    with pytest.raises(GanError, match=words):
        build_loss(loss_cfg(**over))


def test_feature_matching_needs_a_discriminator_with_features() -> None:
    G, D = build_models(model_cfg(name="shift", z_dim=1, d_norm="none"), DataSpec("gauss1d", (1,), 0))
    with pytest.raises(GanError, match="feature_matching"):
        build_loss(loss_cfg(feature_matching=True)).extra.check_fits(D)


def test_virtual_batch_norm_makes_each_sample_independent_of_its_batch() -> None:
    torch.manual_seed(0)
    G, _ = build_models(model_cfg(name="dcgan", g_norm="virtual"), MNIST)
    z = sample_latent(G, 6, "cpu")
    alone = G(z[:1])
    in_batch = G(z)[:1]
    assert torch.allclose(alone, in_batch, atol=1e-5)
    plain, _ = build_models(model_cfg(name="dcgan"), MNIST)  # BatchNorm in training mode mixes the batch
    assert not torch.allclose(plain(z[:2])[:1], plain(z)[:1], atol=1e-5)


def test_virtual_batch_norm_normalises_the_reference_batch() -> None:
    torch.manual_seed(0)
    from gan_cli.models.layers import VirtualBatchNorm2d

    vbn = VirtualBatchNorm2d(3, reference=8)
    x = torch.randn(12, 3, 4, 4) * 5 + 2
    out = vbn(x)[:8]
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)


def test_the_fixed_one_dimensional_example_refuses_variant_options() -> None:
    with pytest.raises(GanError, match="model.d_norm"):
        build_models(model_cfg(name="shift", z_dim=1, d_norm="spectral"), DataSpec("gauss1d", (1,), 0))


def test_the_projection_term_starts_at_the_scale_of_the_unconditional_logit() -> None:
    """An N(0, 1) class embedding over thousands of features made the projection swamp D's logit from step 0."""
    torch.manual_seed(0)
    G, D = build_models(model_cfg(name="dcgan", cond="projection", d_width=16), MNIST)
    x, y = torch.randn(64, 1, 28, 28).clamp(-1, 1), torch.randint(10, (64,))
    h = D.body(x).flatten(1)
    unconditional = D.head.out(h).squeeze(1)
    projection = (D.head.project(y) * h).sum(1)
    assert projection.std() < 3 * unconditional.std()
