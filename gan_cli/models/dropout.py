"""Dropout whose masks are a per-sample draw of the global batch, like every other random draw of a step.

nn.Dropout draws a mask for the batch in front of it: on N processes each rank would draw one for its own slice
from the stream every rank shares, so the ranks would reuse the same masks and a run on N processes would be
another run than on one (3e-2 apart in D's and G's weights after 50 Adam steps of the MLP at its default 0.3).
Drawn through `parallel.per_sample`, each rank takes its slice of the mask one process draws for the whole batch.
"""

from __future__ import annotations

import torch
from torch import nn

from gan_cli.parallel import per_sample


class Dropout(nn.Dropout):
    """nn.Dropout with the mask drawn at the global batch size. In one process it draws what nn.Dropout draws on
    the CPU (`bernoulli_(1 - p)` on a tensor shaped like the input, from the global stream, scaled by 1 / (1 - p)),
    so the floats of one-process CPU runs are those of nn.Dropout; on CUDA nn.Dropout's fused kernel draws from
    another stream, so CUDA runs with dropout get other (equally distributed) masks than before."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.numel() == 0:
            return x
        keep = 1.0 - self.p
        if keep == 0.0:
            return x * torch.zeros((), dtype=x.dtype, device=x.device)
        noise = per_sample(lambda n: x.new_empty((n, *x.shape[1:])).bernoulli_(keep), x.shape[0])
        return x * noise.div_(keep)
