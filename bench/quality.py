"""Time to quality: how much training wall time `gan train`'s default runs (on mnist5k with its labels, and without
them as on a user's unlabelled folder) and the canonical pytorch/examples DCGAN loop (unconditional) each need
before their generator reaches fid5k_lenet <= 30.

Throughput (bench/bench.py) says how fast a step is; this says how fast a *good generator* comes,
which is what a user waits for. The three trainings run one after the other, never at once, each
with the same number of torch threads:

- gan and gan_unlabelled: `gan train` with its default config (whatever conf/train.yaml says when this runs) in a
  subprocess, plus only `eval.every=K eval.metrics=[fid] eval.n=N` and a run directory of its own; the second
  also with `dataset.labels=clusters`: mnist5k's classes dropped, as on a folder of images without labels, so
  that it races the canonical loop on equal footing (neither sees a label).
  Its clock is metrics.jsonl's `train_seconds` (training wall time since the loop started, the
  scoring left out). It trains its default `train.steps`, or is stopped (SIGINT, as a user would)
  after the first score past the budget.
- canonical: bench/loops.py's CanonicalLoop in this process, with pytorch/examples `dcgan/main.py`'s
  own settings (CANONICAL: nz 100, ngf = ndf = 64, Adam 2e-4 with betas 0.5/0.999, batch 64,
  Sigmoid + BCELoss, a DataLoader with 2 workers), on gan's default dataset. It trains
  until the budget, timed per chunk of K steps, and its G is scored between chunks, off the clock.

Both generators are scored alike: in eval mode, the same n samples from the same noise seed
(gan_cli.sample.generate), by the same Scorer (fid, lenet backbone, the same real set).
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
THRESHOLD = 30.0
# pytorch/examples dcgan/main.py: nz=100, ngf=ndf=64, BatchNorm in G and D, N(0, 0.02) init, Adam(lr=2e-4, betas=(0.5, 0.999)),
# batchSize=64, BCELoss on a Sigmoid; pinned so that retuning gan's defaults never moves the baseline
CANONICAL = [
    "model=dcgan",
    "loss=ns",
    "optimizer=adam",
    "optimizer.lr=2e-4",
    "optimizer.lr_g=null",
    "optimizer.lr_d=null",
    "optimizer.betas=[0.5,0.999]",
    "train.batch_size=64",
    "model.z_dim=100",
    "model.g_width=64",
    "model.d_width=64",
    "model.d_norm=batch",
    "model.g_norm=batch",
    "model.g_spectral=false",
    "model.init_std=0.02",
    "model.cond=none",
    "model.attention=0",
    "model.minibatch=none",
    "model.info_cat=0",
    "model.info_cont=0",
    "model.ema=0",
]


@dataclass
class Point:
    seconds: float  # training wall time so far (scoring excluded)
    step: int
    score: float


@dataclass
class Curve:
    name: str  # gan | canonical
    settings: str  # what was trained, in words
    points: list[Point] = field(default_factory=list)
    ended: str = ""  # why it stopped

    def reached(self, threshold: float) -> Optional[Point]:
        """The first score at or below the threshold."""
        return next((p for p in self.points if p.score <= threshold), None)

    def at(self, seconds: float) -> Optional[Point]:
        """The last score taken within `seconds` of training: where the loop stood after that much time."""
        within = [p for p in self.points if p.seconds <= seconds]
        return within[-1] if within else None


def compose_train(overrides: list[str]) -> DictConfig:
    from gan_cli.config import config_dir, register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def eval_overrides(every: int, n: int) -> list[str]:
    return [f"eval.every={every}", "eval.metrics=[fid]", f"eval.n={n}", "eval.backbone=lenet", "eval.seed=0"]


def describe(cfg: DictConfig) -> str:
    o, m, t = cfg.optimizer, cfg.model, cfg.train
    lr = (
        f"lr {o.lr:g}"
        + (f" (G {o.lr_g:g})" if o.get("lr_g") is not None else "")
        + (f" (D {o.lr_d:g})" if o.get("lr_d") is not None else "")
    )
    from gan_cli.models.registry import MODELS

    reads_d_norm = "d_norm" in MODELS.of(m).uses  # progan and lapgan have no choice of D normalisation
    parts = [
        f"{m.name} (z {m.z_dim}, widths {m.g_width}/{m.d_width}"
        + (f", D norm {m.d_norm}" if reads_d_norm else "")
        + (f", conditioning {m.cond}" if m.get("cond", "none") != "none" else "")
        + ")",
        f"loss {cfg.loss.objective}" + (f" + {cfg.loss.penalty}" if cfg.loss.get("penalty", "none") != "none" else ""),
        f"{o.name} {lr}"
        + (f" betas {list(o.betas)}" if o.name == "adam" else "")
        + (f", {o.schedule} schedule" if o.get("schedule", "constant") != "constant" else ""),
        f"batch {t.batch_size}",
    ]
    if cfg.dataset.get("labels", "auto") != "auto":
        parts.append(f"dataset.labels={cfg.dataset.labels}")
    if m.get("ema", 0):
        parts.append(f"EMA {m.ema}")
    if t.get("augment"):
        parts.append(f"augment {list(t.augment)}")
    return ", ".join(parts)


def _metric_name(n: int) -> str:
    from gan_cli.metrics.scorer import n_tag

    return f"fid{n_tag(n)}_lenet"


# ---------------------------------------------------------------------------------------------
# gan: the real command, its default config
# ---------------------------------------------------------------------------------------------
def _read_points(path: Path, metric: str) -> list[Point]:
    if not path.exists():
        return []
    points = []
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            points.append(Point(float(r["train_seconds"]), int(r["step"]), float(r[metric])))
    return points


# gan's two defaults, each raced against the same canonical run: (curve name, what it is, its overrides)
GAN_RUNS = (
    ("gan", "labelled: `gan train` on mnist5k's digits and their classes", []),
    (
        "gan_unlabelled",
        "unlabelled: the classes dropped, k-means clusters of the images in their place (`dataset.labels=clusters`, "
        "what a folder of images without class subfolders gets)",
        ["dataset.labels=clusters"],
    ),
)


def train_gan(
    run_dir: Path,
    every: int,
    n: int,
    budget: float,
    extra: list[str],
    max_steps: Optional[int],
    threads: int,
    log=print,
    name: str = "gan",
    what: str = "`gan train` defaults",
) -> Curve:
    overrides = [*eval_overrides(every, n), *([f"train.steps={max_steps}"] if max_steps else []), *extra]
    cfg = compose_train(overrides)
    curve = Curve(name, f"{what}: {describe(cfg)}, {cfg.train.steps} steps")
    metric = _metric_name(n)
    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    cmd = [sys.executable, "-m", "gan_cli", "train", *overrides, f"hydra.run.dir={run_dir}"]
    log(f"[quality] gan: {' '.join(cmd[2:])}")
    jsonl = run_dir / "metrics.jsonl"
    stopped = False
    with open(run_dir.parent / f"{name}_train.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                time.sleep(0.25)
                points = _read_points(jsonl, metric)
                if not stopped and points and points[-1].seconds >= budget and points[-1].step < cfg.train.steps:
                    proc.send_signal(signal.SIGINT)  # stops at the end of the step and saves, as Ctrl-C does
                    stopped = True
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode != 0 and not (stopped and proc.returncode == 130):
        tail = (run_dir.parent / f"{name}_train.log").read_text()[-3000:]
        raise RuntimeError(f"gan train exited {proc.returncode}:\n{tail}")
    points = _read_points(jsonl, metric)
    past = next((i for i, p in enumerate(points) if p.seconds >= budget), None)
    curve.points = (
        points if past is None else points[: past + 1]
    )  # up to the first score past the budget, as for the canonical loop
    curve.ended = (
        f"stopped at the budget (step {curve.points[-1].step})"
        if stopped
        else f"its train.steps={cfg.train.steps} done"
    )
    return curve


# ---------------------------------------------------------------------------------------------
# canonical: pytorch/examples dcgan/main.py's loop and settings, in this process
# ---------------------------------------------------------------------------------------------
def train_canonical(
    every: int, n: int, budget: float, extra: list[str], max_steps: Optional[int], workers: int, log=print
) -> Curve:
    from bench.helpers import timed
    from bench.loops import CanonicalLoop
    from gan_cli.data import load_dataset
    from gan_cli.metrics.scorer import Scorer
    from gan_cli.models import build_models
    from gan_cli.runtime import generate

    gan_cfg = compose_train([*eval_overrides(every, n), *extra])  # gan's dataset, seed and scoring protocol
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = compose_train([f"dataset={gan_cfg.dataset.name}", *CANONICAL, f"device={device}", *extra])
    with open_dict(cfg):
        cfg.dataset = gan_cfg.dataset  # exactly gan's data (and so the same real set)
        cfg.seed = gan_cfg.seed
    curve = Curve(
        "canonical",
        f"pytorch/examples `dcgan/main.py` loop and settings: {describe(cfg)}, {workers} DataLoader workers, no step limit",
    )
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.seed)
    G, D = build_models(cfg.model, data.spec)
    e = gan_cfg.eval
    scorer = Scorer(
        data, cfg.dataset, ["fid"], e.n, e.backbone, torch.device(cfg.device), int(e.seed), e.inception_weights
    )
    metric = scorer.name_of("fid")
    assert metric == _metric_name(n)
    loop = CanonicalLoop(cfg, data, G, D, workers=workers)
    log(f"[quality] canonical: {curve.settings}")
    trained, step = 0.0, 0
    try:
        while True:
            chunk = every if max_steps is None else min(every, max_steps - step)
            trained += timed(loop, chunk)
            step += chunk
            netG = loop.netG
            netG.eval()  # as gan scores its G
            try:
                fake = generate(netG, scorer.n, scorer.seed, loop.device)
                score = scorer.score(fake)[metric]
            finally:
                netG.train()
            curve.points.append(Point(round(trained, 3), step, score))
            log(f"[quality] canonical step {step}: {metric} {score:.2f} after {trained:.1f} s of training")
            if trained >= budget:
                curve.ended = f"stopped at the budget (step {step})"
                break
            if max_steps is not None and step >= max_steps:
                curve.ended = f"step limit {max_steps} done"
                break
    finally:
        del loop
        gc.collect()  # ends the DataLoader's worker processes
    return curve


# ---------------------------------------------------------------------------------------------
# both, and the report
# ---------------------------------------------------------------------------------------------
def default_threads() -> int:
    """OMP_NUM_THREADS when set (a shared machine), else every core."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return os.cpu_count() or 1


def time_to_quality(
    budget: float = 300.0,
    every: int = 250,
    n: int = 5000,
    threshold: float = THRESHOLD,
    extra: Optional[list[str]] = None,
    max_steps: Optional[int] = None,
    workers: int = 2,
    threads: Optional[int] = None,
    workdir: Optional[Path] = None,
    log=print,
) -> dict:
    """Train gan's default runs (labelled, then unlabelled: GAN_RUNS), then the canonical loop (unconditional, as
    pytorch/examples trains it), each scored every `every` steps; the curves and the ratio of each gan run.

    `extra`: overrides for both sides (tests shrink the networks and data with them); `max_steps`: a step limit
    for both (tests only: the real comparison runs gan's default train.steps and the canonical loop up to the budget).
    `workdir`: where gan's run directory goes (kept); None = a temporary directory, removed afterwards.
    """
    extra = list(extra or [])
    threads = threads or default_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="gan_quality_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        gans = [
            train_gan(work / f"{name}_run", every, n, budget, [*extra, *own], max_steps, threads, log, name, what)
            for name, what, own in GAN_RUNS
        ]
        canonical = train_canonical(every, n, budget, extra, max_steps, workers, log)
    finally:
        torch.set_num_threads(previous)
        if not workdir:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "metric": _metric_name(n),
        "threshold": threshold,
        "budget": budget,
        "every": every,
        "n": n,
        "threads": threads,
        **{gan.name: asdict(gan) for gan in gans},
        "canonical": asdict(canonical),
    }
    for gan in gans:  # "ratio" for the labelled run, "ratio_gan_unlabelled" for the other
        suffix = "" if gan.name == "gan" else f"_{gan.name}"
        result.update({f"{key}{suffix}": value for key, value in ratio(gan, canonical, threshold).items()})
    return result


def ratio(gan: Curve, canonical: Curve, threshold: float) -> dict:
    """canonical time / gan time to the threshold; a bound when only one of them got there."""
    g, c = gan.reached(threshold), canonical.reached(threshold)
    if g and c:
        value = c.seconds / g.seconds
        return {"ratio": value, "ratio_text": f"{value:.2f}x"}
    if g and canonical.points:
        bound = canonical.points[-1].seconds / g.seconds
        return {
            "ratio": None,
            "ratio_text": f"> {bound:.2f}x (the canonical loop did not get there in {canonical.points[-1].seconds:.0f} s)",
        }
    if c and gan.points:
        bound = c.seconds / gan.points[-1].seconds
        return {
            "ratio": None,
            "ratio_text": f"< {bound:.2f}x (gan did not get there in {gan.points[-1].seconds:.0f} s)",
        }
    return {"ratio": None, "ratio_text": "n/a (neither got there)"}


def report(result: dict, command: str, machine: str) -> list[str]:
    metric, thr, budget = result["metric"], result["threshold"], result["budget"]
    names = [name for name, _, _ in GAN_RUNS if name in result] + ["canonical"]
    curves = [Curve(**{**result[k], "points": [Point(**p) for p in result[k]["points"]]}) for k in names]

    def cell(p: Optional[Point]) -> str:
        return "not reached" if p is None else f"{p.seconds:,.1f} s (step {p.step:,})"

    lines = [
        "## Time to quality",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {machine}; {result['threads']} torch thread{'s' if result['threads'] != 1 else ''} for each loop.",
        "",
        f"Training wall time until {metric} <= {thr:g}, and where each loop stands after {budget:g} s of training.",
        "The two loops train one after the other (never at once); their clocks count training only (scoring excluded;",
        "gan's includes its usual progress grids and checkpoints). Both generators are scored in eval mode every",
        f"{result['every']} steps on the same {result['n']} noise vectors (seed 0) against the same real set, by the same lenet classifier,",
        "so the time to the threshold is resolved to that many steps.",
        "",
        *(f"- **{c.name}**: {c.settings}; {c.ended}." for c in curves),
        "",
        f"| loop | time to {metric} <= {thr:g} | {metric} after {budget:g} s | best {metric} | scores |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in curves:
        at = c.at(budget)
        best = min((p.score for p in c.points), default=math.nan)
        at_text = "n/a" if at is None else f"{at.score:.2f} (step {at.step:,}, {at.seconds:,.0f} s)"
        lines.append(f"| {c.name} | {cell(c.reached(thr))} | {at_text} | {best:.2f} | {len(c.points)} |")
    lines.append("")
    for c in curves[:-1]:
        suffix = "" if c.name == "gan" else f"_{c.name}"
        lines.append(f"- **canonical / {c.name} time to {metric} <= {thr:g}: {result[f'ratio_text{suffix}']}**")
    lines.append("")
    for c in curves:
        lines += [f"{c.name} curve:", "", f"| step | train s | {metric} |", "|---:|---:|---:|"]
        lines += [f"| {p.step:,} | {p.seconds:,.1f} | {p.score:.2f} |" for p in c.points]
        lines.append("")
    return lines


SECTION = "## Time to quality"


def write_section(path: Path, lines: list[str], title: str) -> None:
    """Replace (or append) the Time-to-quality section of a results file, keeping everything before it."""
    text = path.read_text() if path.exists() else f"# {title}\n"
    head = text.split(SECTION, 1)[0].rstrip("\n")
    path.write_text(head + "\n\n" + "\n".join(lines).rstrip("\n") + "\n")
