"""Reference runs that a refactoring must leave bit-identical: weights, optimizer states, EMA, schedulers, RNG.

`python -m bench.reference --save` trains each case below at a fixed seed and writes one SHA-256 per tensor of
its last checkpoint to bench/reference.json; `python -m bench.reference` (or `make bench-reference`) trains them
again and names every tensor that differs. The hashes hold for one machine and one torch build (CPU kernels may
differ across them): save them on the machine that checks, before the change, then check after it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

REFERENCE = Path(__file__).with_name("reference.json")
CASES: dict[str, list[str]] = {
    "dcgan_default_30": ["train.steps=30"],
    "ring8_200": ["experiment=ring8", "train.steps=200", "eval.every=0"],
    "progan_20": ["experiment=progan", "train.steps=20", "eval.every=0", "model.stable_steps=5", "model.fade_steps=5"],
    "lapgan_20": ["model=lapgan", "train.steps=20"],
    "ring8_ddp2_20": ["experiment=ring8", "train.steps=20", "eval.every=0", "dist.nproc_per_node=2"],
    # the step's other paths: n_critic with a gradient penalty, one joint pass of D with R1 and InfoGAN codes,
    # feature matching with ACGAN heads and DiffAugment, a lazy gradient penalty on the pyramid
    "wgan_gp_ring8_20": ["model=mlp", "dataset=ring8", "loss=wgan_gp", "train.steps=20"],
    "grid25_joint_r1_30": ["experiment=grid25", "train.steps=30", "eval.every=0"],
    "acgan_fm_augment_10": [
        "model.cond=acgan",
        "loss.feature_matching=true",
        "train.augment=[color,translation]",
        "train.steps=10",
        "model.g_width=16",
        "model.d_width=16",
    ],
    "lapgan_gp_lazy_10": ["model=lapgan", "loss=wgan_gp", "loss.penalty_every=2", "train.steps=10"],
}


def _hashes(value: Any, where: str = "") -> dict[str, str]:
    """One SHA-256 per tensor (and per plain value) of a nested checkpoint, keyed by its path."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        return {
            where: hashlib.sha256(
                data.reshape(-1).view(torch.uint8).numpy().tobytes() + str(data.dtype).encode()
            ).hexdigest()
        }
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_hashes(v, f"{where}.{k}" if where else str(k)))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for i, v in enumerate(value):
            out.update(_hashes(v, f"{where}[{i}]"))
        return out
    return {where: hashlib.sha256(repr(value).encode()).hexdigest()}


def train_case(args: list[str], folder: Path) -> dict[str, str]:
    run = folder / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "gan_cli", "train", *args, "seed=0", "train.threads=1", f"hydra.run.dir={run}"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=folder)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    kept = (
        "step",
        "batches_done",
        "models",
        "optimizers",
        "schedulers",
        "ema_state",
        "grad_scalers",
        "fixed_z",
        "loss_state",
        "rng",
    )
    return _hashes({k: ckpt[k] for k in kept if k in ckpt})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", action="store_true", help="write bench/reference.json instead of checking against it")
    parser.add_argument(
        "cases", nargs="*", default=list(CASES), help=f"cases to run (default: all of {', '.join(CASES)})"
    )
    opts = parser.parse_args()
    saved = json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {}
    failed = []
    for name in opts.cases:
        with tempfile.TemporaryDirectory() as tmp:
            got = train_case(CASES[name], Path(tmp))
        if opts.save:
            saved[name] = got
            print(f"{name}: {len(got)} tensors saved")
            continue
        want = saved.get(name)
        if want is None:
            raise SystemExit(f"{name}: no reference in {REFERENCE}; run python -m bench.reference --save first")
        differ = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        print(
            f"{name}: {'bit-identical' if not differ else f'{len(differ)} of {len(want)} differ: ' + ', '.join(differ[:8])}"
        )
        failed += [name] if differ else []
    if opts.save:
        REFERENCE.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    elif failed:
        raise SystemExit(f"not bit-identical: {', '.join(failed)}")


if __name__ == "__main__":
    main()
