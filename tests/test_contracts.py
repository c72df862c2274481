"""The written contract of G and D (gan_cli/contracts.py): every built-in pair meets it, a pair that breaks it
is named in one paragraph, and the probe leaves training's random stream and the networks as they were."""

from __future__ import annotations

import pytest
import torch
from helpers import MNIST, assert_same, model_cfg
from torch import nn

from gan_cli.contracts import Discriminator, Generator, Objective, check_models
from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError
from gan_cli.losses import OBJECTIVES
from gan_cli.models import build_models

RING = DataSpec("ring8", (2,), 8)


@pytest.mark.parametrize(
    "over, spec",
    [
        ({"name": "dcgan"}, MNIST),
        ({"name": "dcgan", "cond": "cbn"}, MNIST),
        ({"name": "style"}, MNIST),
        ({"name": "mlp"}, RING),
        ({"name": "mlp", "pack": 4}, RING),
        ({"name": "dcgan", "g_norm": "virtual"}, MNIST),
    ],
)
def test_every_built_in_pair_meets_the_contract(over, spec) -> None:
    G, D = build_models(model_cfg(**over), spec)
    assert isinstance(G, Generator) and isinstance(D, Discriminator)
    check_models(G, D, spec, over.get("pack", 1))


def test_every_objective_meets_its_protocol() -> None:
    for name in OBJECTIVES:
        assert isinstance(OBJECTIVES.get(name).build(None), Objective), name


class FlatG(nn.Module):
    z_dim = 4

    def __init__(self, out: int) -> None:
        super().__init__()
        self.net = nn.Linear(4, out)

    def forward(self, z, y=None):
        return self.net(z)


class ColumnD(nn.Module):
    """Returns (N, 1) logits: the most common slip."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 1)

    def forward(self, x, y=None):
        return self.net(x)


def test_a_pair_that_breaks_the_contract_is_named_in_one_paragraph() -> None:
    with pytest.raises(
        GanError,
        match=r"generator .* returned \(2, 3\) for 2 latents; the contract is one sample per latent, shape \(2, 2\)",
    ):
        check_models(FlatG(3), ColumnD(), RING)
    with pytest.raises(
        GanError,
        match=r"discriminator .* returned \(2, 1\) for 2 samples; the contract is one raw logit per sample, shape \(2,\)",
    ):
        check_models(FlatG(2), ColumnD(), RING)
    no_z = FlatG(2)
    no_z.z_dim = 0
    with pytest.raises(GanError, match="integer z_dim >= 1"):
        check_models(no_z, ColumnD(), RING)


def test_the_probe_leaves_the_random_stream_modes_and_statistics_alone() -> None:
    G, D = build_models(model_cfg(name="dcgan"), MNIST)
    G.train(), D.eval()
    stats = [b.clone() for b in G.buffers()]
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    check_models(G, D, MNIST)
    assert torch.equal(torch.rand(3), expected)
    assert G.training and not D.training
    assert_same(stats, list(G.buffers()), "G's buffers")
