"""`gan eval`: score a checkpoint (or every job of a sweep) and write metrics.json beside it.

Like `gan sample`, it needs nothing but the checkpoint: the model, the dataset and its options
come from the config stored inside. Scores are named by metric, sample count and backbone
(plus the truncation when one is used), and metrics.json states the rest of the protocol.

`gan eval reference=<dataset>` scores held-out real data the same way: the value each score
reaches when the "generated" samples are as good as the data itself.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from gan_cli.checkpoint import LAST, resolve_checkpoint, run_dir_of, usable_path
from gan_cli.config import config_dir, option_config
from gan_cli.data import load_dataset
from gan_cli.errors import GanError, io_failure, shown
from gan_cli.files import json_text, write_atomic
from gan_cli.losses import build_objective
from gan_cli.metrics import Scorer
from gan_cli.metrics.scorer import generated_labels
from gan_cli.models import build_models, scored_classes
from gan_cli.runtime import generate, load_generator, load_state, pick_device


def checkpoints_of(target: str) -> list[Path]:
    """One checkpoint, or the last.pt of every job when `target` is a multirun (sweep) directory."""
    p = usable_path(target)
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
    G, spec, ckpt, path = load_generator(str(path), device, cfg.ema, cfg.allow_targets)
    saved = ckpt["config"]
    dataset_cfg = OmegaConf.create(saved["dataset"])
    d_prob = None
    if build_objective(OmegaConf.create(saved["loss"])).outputs_probability:
        _, D = build_models(OmegaConf.create(saved["model"]), spec)
        load_state(D, ckpt["models"]["D"], path)
        D = D.to(device).eval()
        d_prob = lambda x: torch.sigmoid(D(x))  # noqa: E731
    data = load_dataset(dataset_cfg, int(saved["seed"]))
    classes = scored_classes(G, spec)
    scorer = Scorer(
        data,
        dataset_cfg,
        cfg.metrics,
        cfg.n,
        cfg.backbone,
        device,
        cfg.seed,
        cfg.inception_weights,
        has_d=d_prob is not None,
        conditional=classes > 0,
    )
    labels = generated_labels(classes, scorer.n)
    fake = generate(G, scorer.n, cfg.seed, device, labels=labels, truncation=cfg.truncation)
    suffix = f"_t{cfg.truncation:g}" if cfg.truncation is not None else ""
    scores = {f"{k}{suffix}": v for k, v in scorer.score(fake, d_prob, labels).items()}
    protocol = {
        **absolute_paths(scorer.protocol),
        "generator": "ema" if cfg.ema and "G_ema" in ckpt["models"] else "G",
        "truncation": cfg.truncation,
    }
    if labels is not None:
        protocol["labels"] = f"sample i generated with class i % {classes}"
    out = run_dir_of(path) / "metrics.json"
    earlier = read_metrics(out)  # before any scoring
    result = {
        "checkpoint": os.path.abspath(path),  # metrics.json is read from anywhere: a relative path would mean nothing
        "step": int(ckpt["step"]),
        "scores": scores,
        "protocol": protocol,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    # every score ever computed for this run, by checkpoint step and name (the name carries n, backbone and
    # truncation), each with the checkpoint and protocol it came from: a later `gan eval` with other metrics adds to
    # it, one of the same step replaces only the scores of the same name, never erases
    entry = {"checkpoint": result["checkpoint"], "step": result["step"], "protocol": protocol}
    by_step = scores_by_step(earlier)
    by_step.setdefault(str(result["step"]), {}).update({name: {"value": v, **entry} for name, v in scores.items()})
    result["all_scores"] = latest_scores(by_step)  # the run's scores: each name's of the latest step it was scored at
    result["by_step"] = dict(sorted(by_step.items(), key=lambda item: int(item[0])))
    # a new file renamed over the old one: a full disk leaves the old metrics.json whole, a symlink there is replaced
    write_scores(out, result, "an earlier metrics.json of the run is left as it was")
    return result


def write_scores(out: Path, result: dict[str, Any], kept: str) -> None:
    """`result` as JSON into `out`, whole or not at all; a disk that refuses it (full, read-only) is one paragraph that
    still gives the scores just computed, which took minutes and are otherwise lost."""
    try:
        write_atomic(out, json_text(result, indent=2) + "\n")
    except OSError as err:
        scores = ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in result["scores"].items())
        raise io_failure(
            err,
            f"Writing the scores to {shown(out)}",
            f"Nothing was written ({kept}). The scores were: {scores or 'none'}.",
        ) from err
    result["written"] = str(out)


def scores_by_step(metrics: dict) -> dict[str, dict[str, Any]]:
    """{step: {name: entry}} of an earlier metrics.json; one written before `by_step` has it rebuilt from its
    `all_scores`, whose entries carry their step."""
    if isinstance(metrics.get("by_step"), dict):
        return {str(k): dict(v) for k, v in metrics["by_step"].items() if isinstance(v, dict)}
    by_step: dict[str, dict[str, Any]] = {}
    for name, entry in (metrics.get("all_scores") or {}).items():
        if isinstance(entry, dict):
            by_step.setdefault(str(entry.get("step", 0)), {})[name] = entry
    return by_step


def latest_scores(by_step: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each score name's entry of the latest step it was scored at: an old checkpoint's scores never stand for the
    run's when a later step has the same score."""
    latest: dict[str, Any] = {}
    for step in sorted(by_step, key=int):
        latest.update(by_step[step])
    return latest


# the protocol's files, stored absolute: metrics.json means the same wherever it is read from
PATH_KEYS = ("classifier", "inception_weights")


def absolute_paths(protocol: dict[str, Any]) -> dict[str, Any]:
    return {k: os.path.abspath(v) if k in PATH_KEYS and isinstance(v, str) else v for k, v in protocol.items()}


def read_metrics(path: Path) -> dict:
    """A previous metrics.json, {} when there is none (or a symlink stands there: it is replaced, never read or
    followed); one that cannot be read is refused, since writing over it would lose every earlier score."""
    if path.is_symlink() or not os.path.lexists(path):
        return {}
    why = ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        why = f"it cannot be read: {err.strerror or err}"
    except ValueError as err:  # JSON errors and bytes that are not UTF-8
        why = f"it is not valid JSON ({str(err).splitlines()[0]}), e.g. cut short by a full disk"
    else:
        if (
            isinstance(data, dict)
            and isinstance(data.get("all_scores", {}), dict)
            and isinstance(data.get("by_step", {}), dict)
            and all(str(k).isdigit() for k in data.get("by_step", {}))
        ):
            return data
        why = "it is JSON but not a metrics.json of gan eval"
    raise GanError(
        f"{shown(path)} holds the scores of earlier `gan eval` runs, but {why}; it was left as it is and nothing was "
        f"scored. Move it aside (mv {shlex.quote(str(path))} {shlex.quote(str(path) + '.bad')}) or repair it, then run gan eval again."
    )


def dataset_config(name: str):
    """conf/dataset/<name>.yaml on the DatasetConfig schema: the dataset as `gan train dataset=<name>` loads it."""
    from omegaconf.errors import OmegaConfBaseException

    available = sorted(p.stem for p in (config_dir() / "dataset").glob("*.yaml"))
    if name not in available:
        raise GanError(f"reference={name!r} is not a dataset. Allowed: {', '.join(available)}.")
    try:
        cfg = option_config("dataset", name)
        OmegaConf.to_container(cfg, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        raise GanError(
            f"reference={name} cannot be loaded from its default config ({str(exc).splitlines()[0]})."
        ) from exc
    return cfg


def evaluate_reference(cfg, device: torch.device) -> dict[str, Any]:
    """Scores of real data held out from the scorer's real set, under the protocol a checkpoint gets with the
    same seed, n, backbone and metrics: the floor (FID, KID) or ceiling (IS, coverage, cond_acc) each score can
    reach. Written to ./metrics_reference_<dataset>_<n>.json."""
    t0 = time.perf_counter()
    name = str(cfg.reference)
    dataset_cfg = dataset_config(name)
    data = load_dataset(dataset_cfg, cfg.seed)
    labelled = data.spec.num_classes > 0
    scorer = Scorer(
        data,
        dataset_cfg,
        cfg.metrics,
        cfg.n,
        cfg.backbone,
        device,
        cfg.seed,
        cfg.inception_weights,
        conditional=labelled,
        reference=True,
    )
    x, y = scorer.held_out_real()
    scores = scorer.score(x, labels=y)
    held_out = f"real {name} held out: the {scorer.n} samples after the real set in the same seeded permutation, scored as if generated"
    result = {
        "reference": name,
        "scores": scores,
        "protocol": {
            **absolute_paths(scorer.protocol),
            "generator": held_out,
            "truncation": None,
            **({"labels": "the real labels"} if y is not None else {}),
        },
        "seconds": round(time.perf_counter() - t0, 2),
    }
    out = Path(f"metrics_reference_{name}_{scorer.n}.json").resolve()
    write_scores(out, result, f"an earlier {out.name} is left as it was")
    return result


def print_table(title: str, columns: list[str], results: list[dict[str, Any]]) -> None:
    """One column per result: its scores, the classifier's held-out accuracy (when there is one), the seconds."""
    console = Console()
    table = Table(title=title)
    table.add_column("score")
    for label in columns:
        table.add_column(label, justify="right")
    names = list(dict.fromkeys(k for r in results for k in r["scores"]))
    for name in names:
        table.add_row(name, *(f"{r['scores'][name]:.4g}" if name in r["scores"] else "-" for r in results))
    if results[0]["protocol"].get("classifier_accuracy") is not None:
        table.add_row(
            "classifier held-out accuracy",
            *(f"{r['protocol'].get('classifier_accuracy', float('nan')):.4f}" for r in results),
        )
    table.add_row("seconds", *(f"{r['seconds']:.1f}" for r in results))
    console.print(table)
    for line in dict.fromkeys(c for r in results for c in caveats(r["scores"])):
        console.print(line, highlight=False, soft_wrap=True)
    for r in results:
        console.print(f"wrote {r['written']}", highlight=False)


RECALL_NEAR_ZERO = 0.05  # below this, the samples cover (almost) none of the real data


def caveats(scores: dict[str, Any]) -> list[str]:
    """A line for each precision whose recall is ~0: a generator that draws a few kinds of sample well (collapsed)
    scores precision 1, which then says nothing about how good it is."""
    lines = []
    for name, value in scores.items():
        if not name.startswith("recall") or not isinstance(value, (int, float)) or value >= RECALL_NEAR_ZERO:
            continue
        precision = "precision" + name[len("recall") :]
        if precision in scores:
            lines.append(
                f"note: {name} is {value:.2g}: the samples cover almost none of the real data (mode collapse?), so "
                f"{precision} alone means nothing (it says only that the few kinds drawn look real); read it with recall and coverage."
            )
    return lines


def evaluate(cfg) -> list[dict[str, Any]]:
    has_ckpt = not OmegaConf.is_missing(cfg, "ckpt") and cfg.ckpt is not None
    if has_ckpt and cfg.reference is not None:
        raise GanError(
            f"ckpt={cfg.ckpt} and reference={cfg.reference} exclude each other: ckpt scores a generator, "
            "reference scores held-out real data of a dataset. Pass one of them."
        )
    if not has_ckpt and cfg.reference is None:
        raise GanError(
            "gan eval needs a checkpoint: pass ckpt=<run dir> (uses checkpoints/last.pt), ckpt=<file.pt>, or ckpt=<multirun dir> for every job; "
            "or reference=<dataset> (e.g. reference=mnist5k n=2500) to score held-out real data as if generated."
        )
    if cfg.n is not None and cfg.n < 2:
        raise GanError(f"n={cfg.n} must be at least 2 samples.")
    device = pick_device(cfg.device)
    if cfg.reference is not None:
        if cfg.truncation is not None:
            raise GanError(
                f"truncation={cfg.truncation} truncates a generator's noise; reference={cfg.reference} scores real data. Drop truncation."
            )
        result = evaluate_reference(cfg, device)
        print_table(f"gan eval: reference {cfg.reference}", [f"real {cfg.reference} (held out)"], [result])
        return [result]
    paths = checkpoints_of(cfg.ckpt)
    for p in paths:  # every job's earlier scores readable, before hours of scoring
        read_metrics(run_dir_of(p) / "metrics.json")
    results = [evaluate_checkpoint(p, cfg, device) for p in paths]
    if len(results) > 1:
        print_sweep_table(paths, results)
    else:
        print_table("gan eval: 1 checkpoint", [f"step {results[0]['step']}"], results)
    return results


def print_sweep_table(paths: list[Path], results: list[dict[str, Any]]) -> None:
    """A sweep's scores as `gan report` lays runs out: one row per job, the overrides that differ as columns (those
    all jobs share printed once), split into tables that fit the terminal."""
    from gan_cli.tables import print_columns, read_overrides, split_overrides

    console = Console()
    overrides = [read_overrides(run_dir_of(p)) for p in paths]
    shared, varied = split_overrides(overrides)
    console.print(f"[bold]gan eval[/bold]: {len(results)} checkpoints", highlight=False)
    if shared:
        console.print("shared: " + " ".join(f"{k}={v}" for k, v in shared.items()), highlight=False)
    names = list(dict.fromkeys(k for r in results for k in r["scores"]))
    cols = [("run", [run_dir_of(p).name for p in paths])]
    cols += [(k, [o.get(k, "-") for o in overrides]) for k in varied]
    cols += [("step", [str(r["step"]) for r in results])]
    cols += [(n, [f"{r['scores'][n]:.4g}" if n in r["scores"] else "-" for r in results]) for n in names]
    cols += [("seconds", [f"{r['seconds']:.1f}" for r in results])]
    print_columns(cols, console, keep=1)
    for path, r in zip(paths, results):
        for line in caveats(r["scores"]):
            console.print(f"{run_dir_of(path).name}: {line}", highlight=False, soft_wrap=True)
    for r in results:
        console.print(f"wrote {r['written']}", highlight=False, soft_wrap=True)
