"""The random draws inside D are per-sample draws of the global batch: dropout draws what nn.Dropout draws in one
process (so one-process CPU runs keep their floats), and each rank's rows of a draw tile the one-process draw, also
for D's one pass over [real; fake]. The runs on 2 processes are in test_distributed.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_cli.models.dropout import Dropout
from gan_cli.parallel import rank_rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_draws_what_nn_dropout_draws_in_one_process(dtype: torch.dtype) -> None:
    x = torch.randn(64, 37, dtype=dtype, requires_grad=True)
    outs = []
    for layer in (nn.Dropout(0.3), Dropout(0.3)):
        torch.manual_seed(3)
        y = layer(x)
        (grad,) = torch.autograd.grad(y.sum() * 1.7, x)
        outs.append((y, grad, torch.get_rng_state()))
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    assert Dropout(0.0)(x) is x and Dropout(0.3).eval()(x) is x  # nothing drawn, as nn.Dropout
    assert torch.equal(torch.get_rng_state(), state)


def test_each_rank_takes_its_rows_of_the_global_draw_and_of_each_stacked_half() -> None:
    world, local = 2, 3
    whole = torch.arange(world * local).unsqueeze(1)  # one process's draw for the global batch of 6
    assert torch.equal(torch.cat([rank_rows(whole, r, world) for r in range(world)]), whole)
    # D's joint pass: rank r scores [real_r; fake_r]; one process's rows are [real_0, real_1; fake_0, fake_1]
    joint = torch.arange(2 * world * local)
    rows = [rank_rows(joint, r, world, segments=2) for r in range(world)]
    assert rows[0].tolist() == [0, 1, 2, 6, 7, 8] and rows[1].tolist() == [3, 4, 5, 9, 10, 11]
