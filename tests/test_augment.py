"""DiffAugment: differentiable, shape- and dtype-preserving, identity at strength 0, reproducible."""

from __future__ import annotations

import pytest
import torch

from gan_cli.errors import GanError
from gan_cli.training.augment import POLICIES, DiffAugment, parse_policy

SHAPES = [(4, 1, 28, 28), (4, 3, 32, 32)]
ALL_POLICIES = [(p,) for p in POLICIES] + [POLICIES]


def images(shape, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize(
    "text,expected",
    [
        ("color,translation,cutout", POLICIES),
        ("translation,cutout", ("translation", "cutout")),
        ("cutout, color", ("color", "cutout")),  # spaces allowed; applied in the canonical order
        ("color", ("color",)),
        ("none", ()),
        ("", ()),
    ],
)
def test_parse_policy_valid(text, expected):
    assert parse_policy(text) == expected


def test_parse_policy_bad_name_lists_allowed():
    with pytest.raises(GanError) as err:
        parse_policy("color,flip")
    message = str(err.value)
    assert "'flip'" in message and "\n" not in message
    for name in POLICIES + ("none",):
        assert name in message


def test_bad_constructor_arguments():
    with pytest.raises(GanError, match="rotate"):
        DiffAugment(("rotate",))
    with pytest.raises(GanError, match="strength"):
        DiffAugment(POLICIES, strength=-0.5)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=lambda p: "+".join(p))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_differentiable_shape_and_finite(policy, shape):
    x = images(shape).requires_grad_()
    out = DiffAugment(policy)(x, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()  # random weights: not just the sum's gradient
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_plain_sum_backward_each_policy():
    for policy in ALL_POLICIES:
        x = images(SHAPES[1]).requires_grad_()
        DiffAugment(policy)(x).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_strength_zero_is_identity(shape):
    x = images(shape)
    assert torch.equal(DiffAugment(POLICIES, strength=0.0)(x), x)
    assert torch.equal(DiffAugment(())(x), x)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=lambda p: "+".join(p))
def test_changes_the_images(policy):
    x = images(SHAPES[1])
    out = DiffAugment(policy)(x, generator=torch.Generator().manual_seed(3))
    assert (out - x).abs().mean() > 0


def test_translation_shifts_with_zero_fill():
    x = torch.ones(64, 1, 32, 32)
    out = DiffAugment(("translation",))(x, generator=torch.Generator().manual_seed(0))
    moved = (out != x).flatten(1).any(1)
    assert moved.any() and not moved.all()  # some samples drew a shift, and (64 draws of 9x9) some drew none
    assert set(out.unique().tolist()) <= {0.0, 1.0}  # pure shift: values come from x or the zero border
    border = (out == 0).flatten(1).sum(1)
    assert border.max() <= 32 * 32 - 28 * 28  # at most 4 = 32/8 rows and columns shifted in


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cutout_area(shape):
    x = torch.ones(shape)
    out = DiffAugment(("cutout",))(x, generator=torch.Generator().manual_seed(0))
    zeros = (out == 0).flatten(1).sum(1).float() / (shape[2] * shape[3] * shape[1])
    assert ((zeros >= 1 / 16) & (zeros <= 1 / 4)).all(), zeros
    assert torch.equal(out[:, :1].expand_as(out), out)  # the same square in every channel


def test_strength_scales_cutout():
    x = torch.ones(8, 1, 32, 32)
    small = DiffAugment(("cutout",), strength=0.5)(x, generator=torch.Generator().manual_seed(0))
    assert ((small == 0).flatten(1).sum(1) <= 8 * 8).all()  # side 32 * 0.5 * 0.5


def test_same_seed_same_output():
    x = images(SHAPES[1])
    aug = DiffAugment(POLICIES)
    a = aug(x, generator=torch.Generator().manual_seed(7))
    b = aug(x, generator=torch.Generator().manual_seed(7))
    c = aug(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_fresh_randomness_per_sample():
    x = images((1, 3, 32, 32)).expand(16, 3, 32, 32)
    out = DiffAugment(POLICIES)(x, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(out[0], out[1])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_autocast_bf16_cpu(shape):
    for dtype in (torch.float32, torch.bfloat16):
        x = images(shape).to(dtype).requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = DiffAugment(POLICIES)(x, generator=torch.Generator().manual_seed(0))
        assert out.dtype == dtype and out.shape == x.shape and torch.isfinite(out).all()
        (out.float() * torch.randn(out.shape)).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
