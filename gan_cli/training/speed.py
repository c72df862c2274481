"""The speed paths of the training loop: mixed precision, channels_last, torch.compile, data on the device.

Each is a `train.*` option whose `auto` picks what pays off on the device at hand, and none of
them changes what is computed: the fp32 path is the plain loop, AMP only lowers the precision
of the forward passes, channels_last only the memory layout, compile only how kernels are
launched. `bench/` measures them against the canonical DCGAN loop, and a test pins equal math.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from gan_cli.config import AmpMode, Switch, values_of
from gan_cli.errors import GanError, one_of
from gan_cli.training.tracking import SKIPPED

SWITCH_VALUES = values_of(Switch)
AMP_MODES = values_of(AmpMode)
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
COMPILE_MIN_STEPS = 5000  # below this, compiling (tens of seconds) costs more than it saves
DEVICE_DATA_FRACTION = 0.25  # auto keeps a dataset on the GPU when it takes at most this share of free memory


def switch(key: str, value: Any) -> Optional[bool]:
    """auto -> None, on/true -> True, off/false -> False (YAML and Hydra may hand over a bool)."""
    text = str(value).lower()
    if text == "auto":
        return None
    if text in ("on", "true"):
        return True
    if text in ("off", "false"):
        return False
    raise one_of(f"train.{key}", value, SWITCH_VALUES)


@dataclass(frozen=True)
class SpeedPlan:
    """The resolved speed options of one run (no `auto` left)."""

    amp: Optional[torch.dtype]
    channels_last: bool
    compile: bool
    data_on_device: bool

    def describe(self) -> str:
        amp = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp]
        return (
            f"amp={amp} channels_last={self.channels_last} compile={self.compile} data_on_device={self.data_on_device}"
        )


def plan_speed(cfg, device: torch.device, is_image: bool, data_bytes: int) -> SpeedPlan:
    """Resolve the `train.*` speed options for this device and data (cfg is a TrainConfig).

    auto means: bf16 autocast on GPUs that support it (fp32 elsewhere: CPU bf16 is slower than
    fp32 on most CPUs); channels_last for image models on CUDA (tensor cores want NHWC); compile
    on CUDA for runs of at least COMPILE_MIN_STEPS steps; the dataset on the device whenever it fits.
    """
    amp_mode = str(cfg.amp).lower()
    if amp_mode not in AMP_MODES:
        raise one_of("train.amp", cfg.amp, AMP_MODES)
    cuda = device.type == "cuda"
    if amp_mode == "auto":
        amp = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else None
    else:
        amp = AMP_DTYPES[amp_mode]
    if amp is not None and device.type not in ("cuda", "cpu"):
        raise GanError(
            f"train.amp={amp_mode} is supported on CUDA and CPU, not on device {device.type!r}. Use train.amp=off."
        )

    channels_last = switch("channels_last", cfg.channels_last)
    if channels_last is None:
        channels_last = cuda and is_image
    compile_ = switch("compile", cfg.compile)
    if compile_ is None:
        compile_ = cuda and cfg.steps >= COMPILE_MIN_STEPS
    on_device = switch("data_on_device", cfg.data_on_device)
    if on_device is None or not data_bytes:  # no bytes in memory: a folder read from disk batch by batch stays there
        on_device = bool(data_bytes) and (
            not cuda or data_bytes <= DEVICE_DATA_FRACTION * torch.cuda.mem_get_info(device)[0]
        )
    return SpeedPlan(amp, bool(channels_last), bool(compile_), bool(on_device))


def enable_backend_speedups(device: torch.device) -> None:
    """cuDNN autotuning: the shapes of a GAN step never change, so the first step's search pays for itself."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def prepare_models(G: nn.Module, D: nn.Module, plan: SpeedPlan) -> tuple[nn.Module, nn.Module]:
    """(G, D) as the step runs them: NHWC weights in place, and compiled wrappers that share the weights.

    Checkpoints and samples keep using the eager modules (a compiled module's state_dict has
    prefixed keys).
    """
    if plan.channels_last:
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    if plan.compile:
        return torch.compile(G), (CompiledD(D) if hasattr(D, "forward_with_extras") else torch.compile(D))
    return G, D


class CompiledD(nn.Module):
    """A D as the step calls it, with both entry points compiled (models.layers.discriminate calls
    forward_with_extras); the module itself stays eager, for gradient penalties (see `eager`)."""

    def __init__(self, D: nn.Module) -> None:
        super().__init__()
        self._orig_mod = D
        self._logits = torch.compile(D.forward)
        self.forward_with_extras = torch.compile(D.forward_with_extras)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._logits(x, y)


def eager(module: nn.Module) -> nn.Module:
    """The uncompiled module behind a torch.compile wrapper: double backward (gradient penalties) needs it."""
    return getattr(module, "_orig_mod", module)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by `scale` (differentiable, for double backward)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(scale)
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (scale,) = ctx.saved_tensors
        return grad * scale.to(grad.dtype), None


DFn = Callable[[torch.Tensor], torch.Tensor]


class Precision:
    """Autocast for the forward passes and, for fp16, one GradScaler per network (D and G step at different rates).

    With AMP off every method is the plain fp32 operation, so the step function has one shape.
    """

    def __init__(self, dtype: Optional[torch.dtype], device: torch.device, init_scale: float = 2.0**16) -> None:
        self.dtype, self.device_type = dtype, device.type
        fp16 = dtype == torch.float16
        self.scalers = {
            net: torch.amp.GradScaler(device.type, init_scale=init_scale, enabled=fp16) for net in ("D", "G")
        }

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def backward(self, net: str, loss: torch.Tensor) -> None:
        self.scalers[net].scale(loss).backward()

    def unscale(self, net: str, opt: torch.optim.Optimizer) -> None:
        """True gradients in .grad (before measuring or clipping them); a no-op without a scaler."""
        self.scalers[net].unscale_(opt)

    def step(self, net: str, opt: torch.optim.Optimizer) -> None:
        """Optimizer step (skipped by the scaler when fp16 gradients overflowed), then the scale update."""
        scaler = self.scalers[net]
        scaler.step(opt)
        scaler.update()

    def penalty_fn(self, d_fn: DFn) -> DFn:
        """D as a gradient penalty must see it under fp16: PyTorch's AMP gradient-penalty recipe.

        The recipe scales the output before autograd.grad (so the backward through D does not
        underflow in fp16) and unscales the resulting gradient before the penalty is formed.
        Here both happen inside autograd, around D, so every penalty in losses.py works
        unchanged, and without reading the scale on the host.
        """
        scaler = self.scalers["D"]
        if not scaler.is_enabled():
            return d_fn

        def scaled(x: torch.Tensor) -> torch.Tensor:
            scale = scaler.scale(torch.ones((), device=x.device))  # the scale as a device tensor: no host sync
            return _ScaleGrad.apply(d_fn(_ScaleGrad.apply(x, 1.0 / scale)).float(), scale)

        return scaled

    def input_grad(self, outputs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """d sum(outputs) / dx, differentiable (for a penalty on a pass already made, where `penalty_fn` cannot wrap D):
        under fp16, taken on the scaled outputs and unscaled after, as PyTorch's AMP gradient-penalty recipe does."""
        scaler = self.scalers["D"]
        if not scaler.is_enabled():
            return torch.autograd.grad(outputs.sum(), x, create_graph=True)[0]
        scale = scaler.scale(torch.ones((), device=x.device))  # a device tensor: no host sync
        return torch.autograd.grad(outputs.float().sum() * scale, x, create_graph=True)[0] / scale

    def overflow_flag(self, *grad_norms: torch.Tensor) -> dict[str, torch.Tensor]:
        """Under fp16, {SKIPPED: 1.0} when an (unscaled) gradient norm is not finite, which is exactly when
        the scaler skips the update; the tracker then leaves that step out of the means. {} otherwise."""
        if not self.scalers["D"].is_enabled():
            return {}
        finite = torch.isfinite(torch.stack([g.float() for g in grad_norms])).all()
        return {SKIPPED: (~finite).float()}

    def state_dict(self) -> dict[str, Any]:
        return {net: s.state_dict() for net, s in self.scalers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for net, s in self.scalers.items():
            if state.get(net):
                s.load_state_dict(state[net])


FP32 = Precision(None, torch.device("cpu"))  # the plain path: autocast off, no scaler
