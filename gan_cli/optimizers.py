"""The optimizers of G and D: the one registry of `optimizer=` options, and the two-time-scale set-up.

Every option builds as `build(cfg, params, lr)`; a user's `_target_` (a class such as `torch.optim.AdamW`) is
called as `target(params, lr=lr, **optimizer.args)`, so the learning rates, TTUR and schedules apply to it too.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from gan_cli.components import Registry, target_args
from gan_cli.errors import GanError


def _fast_update(name: str, params: list[nn.Parameter]) -> dict[str, bool]:
    """Fused Adam/SGD (one kernel for all parameters, and no host sync under an fp16 GradScaler) on CUDA
    and CPU; the multi-tensor path for the rest on CUDA. Same update rule, fewer launches."""
    devices = {p.device.type for p in params}
    if name in ("adam", "sgd") and devices <= {"cuda", "cpu"} and all(p.is_floating_point() for p in params):
        return {"fused": True}
    return {"foreach": True} if devices == {"cuda"} else {}


def _from_target(make: Callable[..., Any]) -> Callable[..., torch.optim.Optimizer]:
    return lambda cfg, params, lr: make(params, lr=lr, **target_args(cfg))


OPTIMIZERS = Registry(
    "optimizer",
    "name",
    shared=("name", "lr", "lr_d", "lr_g", "schedule", "warmup"),
    target_uses=("_target_", "args"),
    adapt=_from_target,
)


@OPTIMIZERS.register("adam", uses=("betas", "weight_decay"))
def _adam(cfg, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        params, lr=lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **_fast_update("adam", params)
    )


@OPTIMIZERS.register("rmsprop", uses=("momentum", "weight_decay"))
def _rmsprop(cfg, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **_fast_update("rmsprop", params)
    )


@OPTIMIZERS.register("sgd", uses=("momentum", "weight_decay"))
def _sgd(cfg, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **_fast_update("sgd", params)
    )


def build_optimizers(cfg, G: nn.Module, D: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """(opt_G, opt_D); lr_g / lr_d override lr for a two-time-scale update rule."""
    component = OPTIMIZERS.of(cfg)
    lrs = {"lr": cfg.lr, "lr_g": cfg.lr_g, "lr_d": cfg.lr_d}
    for key, value in lrs.items():
        if value is not None and value < 0:
            raise GanError(f"optimizer.{key}={value} must be >= 0 (0 freezes the network).")
    if "betas" in component.uses and (len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas)):
        raise GanError(f"optimizer.betas={list(cfg.betas)} must be two numbers in [0, 1), e.g. [0.5, 0.999].")
    lr_g = cfg.lr if cfg.lr_g is None else cfg.lr_g
    lr_d = cfg.lr if cfg.lr_d is None else cfg.lr_d
    made = []
    for params, lr in ((list(G.parameters()), lr_g), (list(D.parameters()), lr_d)):
        try:
            opt = component.build(cfg, params, lr)
        except (TypeError, ValueError) as exc:
            if component.target is None:
                raise
            raise GanError(
                f"optimizer._target_={component.target!r} could not be built as ({', '.join(['params', 'lr', *target_args(cfg)])}): {exc}."
            ) from exc
        if not isinstance(opt, torch.optim.Optimizer):
            raise GanError(
                f"optimizer._target_={component.target!r} returned a {type(opt).__name__}; gan needs a torch.optim.Optimizer (its schedules and checkpoints use one)."
            )
        made.append(opt)
    return made[0], made[1]
