"""`gan export`: a checkpoint's generator as one file that runs without gan: TorchScript (`torch.jit.load`, torch
alone) or ONNX (onnxruntime alone).

The file takes what `gan sample` feeds the generator (z ~ N(0, I) of the recorded size, and the class labels of a
conditional one) and returns what `gan sample` writes to samples.npy for them; what a caller must know to draw z and
read the output travels inside it (TorchScript: the extra file `gan.json`; ONNX: metadata_props).

Both formats record G by running it once on an example batch (tracing). Every exported file is then run at another
batch size and compared with the generator itself, so a forward pass that tracing cannot record faithfully (Python
branches on tensor values, a batch size read with len(z)) is refused with one paragraph, never written wrong.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf
from torch import nn

from gan_cli.checkpoint import run_dir_of
from gan_cli.data import DataSpec
from gan_cli.errors import GanError, io_failure, one_of
from gan_cli.files import replace_atomically
from gan_cli.models import latent_layout, num_classes
from gan_cli.models.progan import Growing, downscale
from gan_cli.runtime import load_generator

SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
METADATA = "gan.json"  # the TorchScript extra file (and the ONNX metadata key) holding the description
TRACE_BATCH, CHECK_BATCH = 2, 3  # traced at one batch size, checked at another: a size baked into the file shows
TOLERANCE = 1e-4  # largest |file - generator| accepted at the check (ONNX Runtime's kernels differ in the last bits)
ONNX_PACKAGES = "onnx, onnxscript and onnxruntime"


class ExportedGenerator(nn.Module):
    """G as the file holds it: z (and labels) in, samples out, exactly as `gan sample` draws them (a progressive G
    saved before its last stage at its own side, unless `upscale`)."""

    def __init__(self, G: nn.Module, side: Optional[int] = None) -> None:
        super().__init__()
        self.G, self.side = G, side

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.G(z, labels)
        return downscale(x, self.side) if self.side is not None else x


def describe(G: nn.Module, spec: DataSpec, ckpt: dict, which: str, side: Optional[int]) -> dict[str, Any]:
    """What the file records about itself: enough to draw z and labels and to read the output, with gan absent."""
    layout = latent_layout(G)
    classes = num_classes(G)
    shape = list(spec.shape) if side is None else [spec.shape[0], side, side]
    return {
        "z_size": layout.size,
        "z": f"float32 [batch, {layout.size}]: N(0, I) noise"
        + (
            f" ({layout.n_noise}), then InfoGAN codes ({layout.n_cat} one-hot, {layout.n_cont} uniform in [-1, 1])"
            if layout.n_cat or layout.n_cont
            else ""
        ),
        "num_classes": classes,
        "labels": f"int64 [batch], class indices 0..{classes - 1}" if classes else None,
        "output_shape": shape,
        "output_range": [-1.0, 1.0] if spec.is_image else None,
        "output": (
            "images [batch, C, H, W] in the training data's range [-1, 1]; pixels = (x + 1) / 2 (clamp to [0, 1])"
            if spec.is_image
            else "points [batch, d] in the data's own units"
        ),
        "dataset": spec.name,
        "model": str(ckpt["config"]["model"].get("name")),
        "generator": which,
        "step": int(ckpt.get("step", 0)),
    }


def _example(meta: dict[str, Any], n: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(n)
    z = torch.randn(n, meta["z_size"], generator=g)
    return (z, torch.arange(n) % meta["num_classes"]) if meta["num_classes"] else (z,)


def _draws_own_noise(module: nn.Module, example: tuple[torch.Tensor, ...]) -> bool:
    """Whether G draws random numbers of its own (model=style's per-layer noise): two seeds, two outputs."""
    outs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        outs.append(module(*example))
    return not torch.equal(outs[0], outs[1])


def _refusal(model: str, fmt: str, why: str) -> GanError:
    return GanError(
        f"{model}'s generator cannot be exported to {fmt}: {why}. Export records G by running it once on an example "
        f"batch, so its forward pass must do the same operations for every batch: read the batch size as z.shape[0] "
        f"(not len(z), which records a fixed number), and no Python if or loop on a tensor's values. Its samples are "
        f"still drawn by `gan sample` and scored by `gan eval`; the exported file is the only thing that needs this."
    )


@torch.no_grad()
def _torchscript(module: ExportedGenerator, meta: dict, out: Path, model: str) -> Any:
    example = _example(meta, TRACE_BATCH)
    # torch.jit's deprecation notices and the tracer's warnings are silenced: check_exported decides whether it worked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(module, example, check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files={METADATA: json.dumps(meta)})
        except Exception as exc:  # a user's model can fail to trace in any way
            raise _refusal(model, "torchscript", f"tracing failed ({_first_line(exc)})") from exc
        replace_atomically(out, lambda f: f.write(buffer.getvalue()), binary=True, mode=0o644)
        loaded = torch.jit.load(str(out))
    return loaded


@torch.no_grad()
def _onnx(module: ExportedGenerator, meta: dict, out: Path, model: str) -> Any:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise GanError(
            f"format=onnx needs {ONNX_PACKAGES}, which are not installed ({exc.name} is missing). Install them with "
            f"pip install 'gan-cli[export]' (or pip install {ONNX_PACKAGES.replace(', ', ' ').replace(' and ', ' ')}), "
            f"or export with format=torchscript, which needs torch alone."
        ) from exc
    example = _example(meta, TRACE_BATCH)
    names = ["z", "labels"][: len(example)]
    batch = torch.export.Dim("batch", min=1)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                example,
                input_names=names,
                output_names=["samples"],
                dynamic_shapes={name: {0: batch} for name in names},
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        proto = program.model_proto
    except Exception as exc:
        raise _refusal(model, "onnx", f"the ONNX exporter failed ({_first_line(exc)})") from exc
    for key, value in {METADATA: json.dumps(meta), **{k: json.dumps(v) for k, v in meta.items()}}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    replace_atomically(out, lambda f: f.write(data), binary=True, mode=0o644)
    onnx.checker.check_model(str(out))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return lambda *xs: torch.from_numpy(session.run(None, {n: x.numpy() for n, x in zip(names, xs)})[0])


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


@torch.no_grad()
def check_exported(run: Any, module: ExportedGenerator, meta: dict, model: str, fmt: str) -> float:
    """The largest |file - generator| at a batch size other than the traced one, with the same seed for any noise
    G draws itself (TorchScript draws it from torch's generator as G does; onnxruntime from its own, so then only
    the shape is compared)."""
    example = _example(meta, CHECK_BATCH)
    torch.manual_seed(0)
    expected = module(*example)
    try:
        torch.manual_seed(0)
        got = run(*example)
    except Exception as exc:
        raise _refusal(model, fmt, f"the exported file fails at batch size {CHECK_BATCH} ({_first_line(exc)})") from exc
    if got.shape != expected.shape:
        raise _refusal(
            model,
            fmt,
            f"at batch size {CHECK_BATCH} the file returns shape {list(got.shape)}, G {list(expected.shape)}",
        )
    if fmt == "onnx" and _draws_own_noise(module, example):
        return float("nan")
    diff = float((got.float() - expected.float()).abs().max())
    if not diff <= TOLERANCE:
        raise _refusal(
            model, fmt, f"at batch size {CHECK_BATCH} its samples differ from G's by up to {diff:.3g} (> {TOLERANCE})"
        )
    return diff


def export_generator(G: nn.Module, meta: dict, fmt: str, out: Path, model: str, side: Optional[int] = None) -> float:
    """Write G as `fmt` to `out` and check it; the largest difference from G found (nan: G draws its own noise)."""
    module = ExportedGenerator(G.cpu().eval(), side).eval()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        run = (_torchscript if fmt == "torchscript" else _onnx)(module, meta, out, model)
    except OSError as err:
        raise io_failure(err, f"Writing the exported generator to {str(out)!r}", "Pick another out=.") from err
    try:
        return check_exported(run, module, meta, model, fmt)
    except GanError:
        with contextlib.suppress(OSError):
            out.unlink()  # a file that does not reproduce G is never left behind
        raise


def export(cfg) -> Path:
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise GanError(
            "gan export needs a checkpoint: pass ckpt=<run dir> (uses its checkpoints/last.pt) or ckpt=<file.pt>."
        )
    fmt = str(cfg.format)
    if fmt not in SUFFIX:  # the schema's Enum refuses it first; a config built in Python may not have one
        raise one_of("format", fmt, list(SUFFIX))
    G, spec, ckpt, path = load_generator(cfg.ckpt, torch.device("cpu"), cfg.ema, cfg.allow_targets)
    out = Path(cfg.out) if cfg.out else run_dir_of(path) / f"generator{SUFFIX[fmt]}"
    if out.suffix.lower() != SUFFIX[fmt]:
        raise GanError(
            f"out={str(out)!r} does not end in {SUFFIX[fmt]}, the ending of a format={fmt} file. Name it "
            f"{out.with_suffix(SUFFIX[fmt]).name}, or pick format={next(f for f in SUFFIX if f != fmt)}."
        )
    side = G.side if isinstance(G, Growing) and not cfg.upscale and G.side != spec.shape[-1] else None
    which = "G_ema" if cfg.ema and "G_ema" in ckpt["models"] else "G"
    meta = describe(G, spec, ckpt, which, side)
    diff = export_generator(G, meta, fmt, out, model=f"model={meta['model']}", side=side)
    checked = "G draws its own noise: shapes checked" if diff != diff else f"max |file - G| {diff:.2g}"
    size = os.path.getsize(out)
    print(
        f"wrote {out} ({fmt}, {size / 1024:.0f} KiB; {spec.name}, step {meta['step']}, {which}; z {meta['z_size']}, "
        f"{meta['num_classes']} classes; {checked} at batch {CHECK_BATCH})"
    )
    return out
