"""The contract every generator, discriminator, objective, model builder and dataset source meets: what the training loop, the scores and
`gan sample` call on them, written down once, and checked on the built networks before a run starts.

The loop never asks which architecture it trains. It draws z with `sample_latent(G, n)` (from `G.z_dim`, or
from `G.input.layout` when G carries InfoGAN codes), calls `G(z, y)` and `D(x, y)`, and reads D's extra
outputs (features, class logits, code estimates) through `forward_with_extras` when D has it. `check_models`
runs a two-sample probe through the built pair so that a network that breaks this contract stops with one
paragraph naming what is wrong, before the first step, rather than with a shape error deep in a loss.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Union, runtime_checkable

import torch
from torch import nn

from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError
from gan_cli.rng import seeded_global_rng


@runtime_checkable
class Generator(Protocol):
    """z (N x z_dim, from `sample_latent`) and optional class labels y (N,) -> samples N x *data shape.

    Images come out in [-1, 1] (tanh), toy points anywhere. y=None on a class-conditional G draws the classes
    0, 1, ..., k-1, 0, ... so fixed-noise grids show every class. Optional parts the loop reads when present:
    `input.layout` (InfoGAN codes in z, for the mutual-information term and `mode=codes`), `input.labels` or
    `class_embed`, or an integer `classes` (the number of classes, for `cond_acc` and `mode=classes`)."""

    z_dim: int

    def __call__(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor: ...


@runtime_checkable
class Discriminator(Protocol):
    """x (N x *data shape) and optional labels y -> one raw logit per sample, shape (N,) (per pack of m samples
    under PacGAN's packing). No sigmoid inside: every objective and penalty reads logits. Heads with extra outputs
    (ACGAN, InfoGAN, feature matching) add `forward_with_extras(x, y) -> (logits, {name: tensor})`."""

    def __call__(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor: ...


@runtime_checkable
class Objective(Protocol):
    """The adversarial game on D's logits: D's loss on real and fake logits, G's loss on the fake ones, what the
    `D(x)` / `D(G(z))` scalars show (`d_output`), and what D's optimum estimates (logged under `estimate_tag`)."""

    name: str
    estimate_tag: str
    outputs_probability: bool

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor: ...

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor: ...

    def d_output(self, logits: torch.Tensor) -> torch.Tensor: ...

    def estimate(self, real: torch.Tensor, fake: torch.Tensor, d_loss: torch.Tensor) -> torch.Tensor: ...


class ModelBuilder(Protocol):
    """`model._target_`: called once per run (twice under PacGAN's packing, for D's wider input) with the data's
    `DataSpec` (shape, number of classes) and `model.args` as keywords; returns (G, D) meeting the two Protocols
    above. gan adds what it adds to any architecture around them: the EMA of G, packing, DDP, the probe below."""

    def __call__(self, spec: DataSpec, **args: Any) -> tuple[nn.Module, nn.Module]: ...


class DatasetSource(Protocol):
    """`dataset._target_`: called once per run with the run's seed and `dataset.args`; returns x, or (x, y).
    x: a float tensor of N >= 2 samples, N x C x H x W images in [-1, 1] (G ends in tanh) or N x d points; y: N
    integer class labels 0..k-1 (k >= 2 makes the data labelled), or None. gan keeps it in memory, shuffles it
    per epoch, applies `dataset.limit` and `dataset.image_size`, and checks all of this (`data.datasets.user_data`)."""

    def __call__(self, seed: int, **args: Any) -> Union[torch.Tensor, tuple[torch.Tensor, Optional[torch.Tensor]]]: ...


def missing_members(obj: object, protocol: type) -> list[str]:
    """The attributes and methods of `protocol` that `obj` lacks (or has but cannot call), by name."""
    wanted = [
        *getattr(protocol, "__annotations__", {}),
        *(k for k, v in vars(protocol).items() if callable(v) and not k.startswith("_")),
    ]
    missing = []
    for name in dict.fromkeys(wanted):
        value = getattr(obj, name, None)
        if value is None or (callable(getattr(protocol, name, None)) and not callable(value)):
            missing.append(f"{name}()" if callable(getattr(protocol, name, None)) else name)
    return missing


def check_models(G: nn.Module, D: nn.Module, spec: DataSpec, pack: int = 1, label: str = "this model") -> None:
    """Two samples (two packs) through G and D, in eval mode and on a random stream of their own (training's
    stream and the networks' modes are left as they were): GanError naming the first broken promise."""
    from gan_cli.models import num_classes, sample_latent

    kind = f"{label} for dataset={spec.name}"
    if not isinstance(G, Generator) or not isinstance(getattr(G, "z_dim", None), int) or G.z_dim < 1:
        raise GanError(
            f"The generator of {kind} breaks gan's contract (gan_cli/contracts.py): it needs an integer z_dim >= 1 and a forward(z, y=None)."
        )
    if not isinstance(D, Discriminator):
        raise GanError(
            f"The discriminator of {kind} breaks gan's contract (gan_cli/contracts.py): it needs a forward(x, y=None) returning logits."
        )
    n = 2 * pack
    device = next(G.parameters()).device if any(True for _ in G.parameters()) else torch.device("cpu")
    modes = (G.training, D.training)
    G.eval(), D.eval()
    try:
        with torch.no_grad(), seeded_global_rng(0, device):
            z = sample_latent(G, n, device)
            y = torch.arange(n, device=device) % num_classes(G) if num_classes(G) else None
            x = G(z, y)
            if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, *spec.shape):
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise GanError(
                    f"The generator of {kind} returned {got} for {n} latents; the contract is one sample per latent, shape {(n, *spec.shape)}."
                )
            logits = D(x, y)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (n // pack,):
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise GanError(
                    f"The discriminator of {kind} returned {got} for {n} samples; the contract is one raw logit per "
                    f"{'pack' if pack > 1 else 'sample'}, shape ({n // pack},) (no sigmoid inside: the objectives read logits)."
                )
    finally:
        G.train(modes[0]), D.train(modes[1])
