"""The contract every generator, discriminator, objective, model builder and dataset source meets: what the training loop, the scores and
`gan sample` call on them, written down once, and checked on the built networks before a run starts.

The loop never asks which architecture it trains. It draws z with `sample_latent(G, n)` (from `G.z_dim`, or
from `G.input.layout` when G carries InfoGAN codes), calls `G(z, y)` and `D(x, y)`, and reads D's extra
outputs (features, class logits, code estimates) through `forward_with_extras` when D has it. `check_models`
runs a two-sample probe through the built pair so that a network that breaks this contract stops with one
paragraph naming what is wrong, before the first step, rather than with a shape error deep in a loss.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Optional, Protocol, Union, runtime_checkable

import torch
import torch.overrides
from torch import nn

from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError, is_out_of_memory
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
    stream and the networks' modes are left as they were): GanError naming the first broken promise.

    An exception raised inside a user's G or D (its class defined outside gan_cli; a built-in's is a bug and keeps
    its traceback) becomes one paragraph naming the call's contract and the exception's first line; a GanError
    raised inside passes as it is. A D whose output is a squashed probability is refused by this rule: the tensor
    D returns is the output of a sigmoid or softmax run inside D's forward (nn.Sigmoid, nn.Softmax, torch.sigmoid,
    F.softmax, Tensor.sigmoid, ..., traced on the probe): a view of that output or the same values, element for
    element; and all its values lie in [0, 1]. Values alone never decide, so a raw-logit D whose outputs at init
    happen to lie in (0, 1), or one with a sigmoid gate inside, passes."""
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
            with _users_call(G, "generator", kind, (z, y)):
                x = G(z, y)
            if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, *spec.shape):
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise GanError(
                    f"The generator of {kind} returned {got} for {n} latents; the contract is one sample per latent, shape {(n, *spec.shape)}."
                )
            with _users_call(D, "discriminator", kind, (x, y)), _Squashes(D) as squash:
                logits = D(x, y)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (n // pack,):
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise GanError(
                    f"The discriminator of {kind} returned {got} for {n} samples; the contract is one raw logit per "
                    f"{'pack' if pack > 1 else 'sample'}, shape ({n // pack},) (no sigmoid inside: the objectives read logits)."
                )
            if squash.made(logits):
                raise GanError(
                    f"The discriminator of {kind} ends in a {squash.name} ({squash.source}): all {logits.numel()} outputs "
                    f"{_span(logits)} on the probe before step 1. gan needs raw logits, one per sample, any real number: "
                    f"every loss and penalty reads logits (minimax and ns are BCE-with-logits, which applies the sigmoid "
                    f"itself), so a squashed D trains without a warning but with D(x) and D(G(z)) held between "
                    f"sigmoid(0) = 0.5 and sigmoid(1) = 0.73. Fix: drop the final {squash.name} and return the raw logits."
                )
    finally:
        G.train(modes[0]), D.train(modes[1])


_SQUASHES = {
    "sigmoid": "Sigmoid",
    "sigmoid_": "Sigmoid",
    "expit": "Sigmoid",
    "softmax": "Softmax",
    "softmax_": "Softmax",
}


class _Squashes(torch.overrides.TorchFunctionMode):
    """Records the outputs of the sigmoids and softmaxes called inside `net` while active (as modules, functions or
    methods), and which of net's nn.Sigmoid / nn.Softmax modules made each."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.outs: list[tuple[str, torch.Tensor]] = []
        self.made_by: dict[int, str] = {}
        self.name = self.source = ""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = _SQUASHES.get(getattr(func, "__name__", ""))
        if name is not None and isinstance(out, torch.Tensor):
            self.outs.append((name, out))
        return out

    def __enter__(self):
        def hook(path):
            def record(module, args, out) -> None:  # returns None: the module's output stays as it is
                self.made_by.setdefault(id(out), f"{path}, an nn.{type(module).__name__}")

            return record

        self.hooks = [
            m.register_forward_hook(hook(path))
            for path, m in self.net.named_modules()
            if isinstance(m, (nn.Sigmoid, nn.Softmax)) and path
        ]
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()
        return super().__exit__(*exc)

    def made(self, logits: torch.Tensor) -> bool:
        """Whether `logits` lies in [0, 1] and is a squash's output (a view of it, or the same values); sets `name`
        ('Sigmoid' or 'Softmax') and `source` (the module that made it, as 'main.12, an nn.Sigmoid', or 'torch.sigmoid')."""
        if not logits.is_floating_point() or not bool(((logits >= 0) & (logits <= 1)).all()):
            return False
        for name, out in reversed(self.outs):
            if _within(logits, out) or (
                out.numel() == logits.numel() and torch.equal(out.reshape(-1), logits.reshape(-1))
            ):
                self.name, self.source = name, self.made_by.get(id(out), f"torch.{name.lower()}")
                return True
        return False


def _within(t: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether t's elements lie in out's memory: t is a view of out (`.view(-1)`, `.squeeze(1)`, `[:, 1]`)."""

    def extent(a: torch.Tensor) -> tuple[int, int]:
        last = sum((size - 1) * abs(stride) for size, stride in zip(a.shape, a.stride()))
        return a.data_ptr(), a.data_ptr() + last * a.element_size()

    if t.device != out.device or t.untyped_storage().data_ptr() != out.untyped_storage().data_ptr():
        return False
    (lo, hi), (out_lo, out_hi) = extent(t), extent(out)
    return out_lo <= lo and hi <= out_hi


def _span(t: torch.Tensor) -> str:
    """'in (0, 1): 0.48..0.53', with [0, 1] where a value is 0 or 1 exactly."""
    low, high = t.min().item(), t.max().item()
    interval = "(0, 1)" if 0 < low and high < 1 else "[0, 1]"
    return f"in {interval}: {low:.2f}..{high:.2f}"


def _one_line(err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0].strip()
    return f"{type(err).__name__}: {first[:300]}" if first else type(err).__name__


def _takes_two(net: nn.Module, args: tuple) -> bool:
    try:
        inspect.signature(net.forward).bind(*args)
    except TypeError:
        return False
    except ValueError:  # no signature to read
        return True
    return True


@contextlib.contextmanager
def _users_call(net: nn.Module, role: str, kind: str, args: tuple):
    """Turns what a user's network raises on the probe into one paragraph naming the call's contract."""
    try:
        yield
    except GanError:
        raise
    except Exception as err:
        if type(net).__module__.split(".")[0] == "gan_cli" or is_out_of_memory(err):
            raise  # a built-in's failure is a bug: its traceback stays
        n = len(args[0])
        if role == "generator":
            contract = (
                f"gan calls G(z, y) with z of shape N × z_dim ({n} × {net.z_dim} here) and y=None (or N class labels): "
                f"write forward(z, y=None), and reshape z inside G where its first layer wants another shape, "
                f"e.g. z.view(len(z), -1, 1, 1) before a ConvTranspose2d; it returns one sample per latent"
            )
        else:
            contract = (
                f"gan calls D(x, y) with x of shape {tuple(args[0].shape)} (G's samples) and y=None (or N class labels): "
                f"write forward(x, y=None) returning one raw logit per sample, shape (N,), no sigmoid"
            )
        signature = "" if _takes_two(net, args) else f": its forward{inspect.signature(net.forward)} takes no y"
        raise GanError(
            f"The {role} of {kind} failed on gan's probe before step 1 ({_one_line(err)}){signature}. "
            f"The contract (gan_cli/contracts.py): {contract}."
        ) from err
