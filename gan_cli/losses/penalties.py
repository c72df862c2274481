"""D's gradient penalties (WGAN-GP, DRAGAN, R1), each computed on its own points or, for R1, from a pass D ran."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from gan_cli.parallel import per_sample

DFn = Callable[[torch.Tensor], torch.Tensor]


def _input_grad(d_fn: DFn, x: torch.Tensor) -> torch.Tensor:
    """grad_x D(x), differentiable so a penalty on it can be minimised."""
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(d_fn(x).sum(), x, create_graph=True)[0]


def _input_grad_norms(d_fn: DFn, x: torch.Tensor) -> torch.Tensor:
    """||grad_x D(x)||_2 per sample."""
    return _per_sample_norms(_input_grad(d_fn, x))


def _per_sample_norms(grad: torch.Tensor) -> torch.Tensor:
    return grad.flatten(1).norm(2, dim=1)


def _per_sample_uniform(x: torch.Tensor) -> torch.Tensor:
    """One U(0, 1) per sample (per_sample: in a distributed run, this rank's slice of the global batch's draw)."""
    return per_sample(lambda n: torch.rand(n, *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype), len(x))


def gradient_penalty(d_fn: DFn, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x D(x_hat)||_2 - 1)^2] on uniform interpolates between real and fake samples."""
    eps = _per_sample_uniform(real)
    x_hat = eps * real.detach() + (1 - eps) * fake.detach()
    return (_input_grad_norms(d_fn, x_hat) - 1).square().mean()


def dragan_penalty(d_fn: DFn, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """DRAGAN (Kodali et al. 2017): the same norm-1 penalty, but only in a noisy neighbourhood of the real data.

    Perturbed points x + 0.5 std(x) u, u ~ U(0, 1), are mixed with x; keeping D's gradients
    tame around real samples is what the paper credits for fewer mode collapses.
    """
    real = real.detach()
    noise = per_sample(lambda n: torch.rand(n, *real.shape[1:], device=real.device, dtype=real.dtype), len(real))
    perturbed = real + 0.5 * real.std() * noise
    alpha = _per_sample_uniform(real)
    return (_input_grad_norms(d_fn, real + alpha * (perturbed - real)) - 1).square().mean()


def r1_penalty(d_fn: DFn, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E ||grad_x D(x)||^2 on real data only; loss.penalty_weight is gamma / 2."""
    return r1_from_grad(_input_grad(d_fn, real))


def r1_from_grad(real_grad: torch.Tensor) -> torch.Tensor:
    """R1 from D's input gradient at the real batch: r1_penalty's own pass, or one D has already run (train.d_pass=joint)."""
    return _per_sample_norms(real_grad).square().mean()


PENALTIES: dict[str, Optional[Callable[[DFn, torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "none": None,
    "gp": gradient_penalty,
    "dragan": dragan_penalty,
    "r1": r1_penalty,
}
