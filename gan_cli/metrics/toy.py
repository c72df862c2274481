"""Mode coverage on Gaussian mixtures, with the definitions of VEEGAN and PacGAN.

A sample is *high quality* when it lies within 3 standard deviations of its nearest mode; a
mode is *covered* when at least one high-quality sample has it as nearest mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModeCoverage:
    modes_covered: int
    n_modes: int
    high_quality: float  # fraction of samples within 3 std of their nearest mode


def mode_coverage(samples: torch.Tensor, centers: torch.Tensor, std: float, n_std: float = 3.0) -> ModeCoverage:
    samples = samples.detach().float().cpu()
    dist = torch.cdist(samples, centers.float())
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= n_std * std
    covered = torch.unique(nearest[good]).numel()
    return ModeCoverage(int(covered), len(centers), float(good.float().mean()))
