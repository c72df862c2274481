"""`gan eval`: score a checkpoint (or every job of a sweep) and write metrics.json beside it.

Like `gan sample`, it needs nothing but the checkpoint: the model, the dataset and its options
come from the config stored inside. Scores are named by metric, sample count and backbone
(plus the truncation when one is used), and metrics.json states the rest of the protocol.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from gan_cli.checkpoint import LAST, resolve_checkpoint, run_dir_of
from gan_cli.data import load_dataset
from gan_cli.errors import GanError
from gan_cli.losses import OBJECTIVES
from gan_cli.metrics import Scorer
from gan_cli.models import build_models
from gan_cli.sample import generate, load_generator
from gan_cli.train import _load_state, pick_device


def checkpoints_of(target: str) -> list[Path]:
    """One checkpoint, or the last.pt of every job when `target` is a multirun (sweep) directory."""
    p = Path(target).expanduser()
    if p.is_dir() and not (p / "checkpoints" / LAST).is_file() and not (p / LAST).is_file():
        jobs = sorted((c for c in p.glob(f"*/checkpoints/{LAST}")), key=lambda c: _job_key(c.parent.parent.name))
        if jobs:
            return jobs
    return [resolve_checkpoint(target)]


def _job_key(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (1 << 30, name)


def evaluate_checkpoint(path: Path, cfg, device: torch.device) -> dict[str, Any]:
    """Scores of one checkpoint with their protocol; also written to <run dir>/metrics.json."""
    t0 = time.perf_counter()
    G, spec, ckpt, path = load_generator(str(path), device, cfg.ema)
    saved = ckpt["config"]
    dataset_cfg = OmegaConf.create(saved["dataset"])
    objective = OBJECTIVES.get(saved["loss"]["objective"])
    d_prob = None
    if objective is not None and objective.outputs_probability:
        _, D = build_models(OmegaConf.create(saved["model"]), spec)
        _load_state(D, ckpt["models"]["D"], path)
        D = D.to(device).eval()
        d_prob = lambda x: torch.sigmoid(D(x))  # noqa: E731
    data = load_dataset(dataset_cfg, int(saved["seed"]))
    scorer = Scorer(data, dataset_cfg, cfg.metrics, cfg.n, cfg.backbone, device, cfg.seed, cfg.inception_weights, has_d=d_prob is not None)
    fake = generate(G, scorer.n, cfg.seed, device, truncation=cfg.truncation)
    suffix = f"_t{cfg.truncation:g}" if cfg.truncation is not None else ""
    scores = {f"{k}{suffix}": v for k, v in scorer.score(fake, d_prob).items()}
    result = {
        "checkpoint": str(path),
        "step": int(ckpt["step"]),
        "scores": scores,
        "protocol": {**scorer.protocol, "generator": "ema" if cfg.ema and "G_ema" in ckpt["models"] else "G", "truncation": cfg.truncation},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    out = run_dir_of(path) / "metrics.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    result["written"] = str(out)
    return result


def _job_label(path: Path) -> str:
    overrides = run_dir_of(path) / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        items = yaml.safe_load(overrides.read_text()) or []
        return " ".join(items) or run_dir_of(path).name
    return run_dir_of(path).name


def evaluate(cfg) -> list[dict[str, Any]]:
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise GanError("gan eval needs a checkpoint: pass ckpt=<run dir> (uses checkpoints/last.pt), ckpt=<file.pt>, or ckpt=<multirun dir> for every job.")
    if cfg.n is not None and cfg.n < 2:
        raise GanError(f"n={cfg.n} must be at least 2 samples.")
    device = pick_device(cfg.device)
    paths = checkpoints_of(cfg.ckpt)
    results = [evaluate_checkpoint(p, cfg, device) for p in paths]
    console = Console()
    table = Table(title=f"gan eval: {len(results)} checkpoint{'s' if len(results) > 1 else ''}")
    table.add_column("score")
    for p, r in zip(paths, results):
        table.add_column(f"{_job_label(p)}\n(step {r['step']})" if len(results) > 1 else f"step {r['step']}", justify="right")
    names = list(dict.fromkeys(k for r in results for k in r["scores"]))
    for name in names:
        table.add_row(name, *(f"{r['scores'][name]:.4g}" if name in r["scores"] else "-" for r in results))
    protocol = results[0]["protocol"]
    if protocol.get("classifier_accuracy") is not None:
        table.add_row("classifier held-out accuracy", *(f"{r['protocol'].get('classifier_accuracy', float('nan')):.4f}" for r in results))
    table.add_row("seconds", *(f"{r['seconds']:.1f}" for r in results))
    console.print(table)
    for r in results:
        console.print(f"wrote {r['written']}", highlight=False)
    return results
