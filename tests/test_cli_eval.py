"""`gan eval`, eval.every, best.pt, EMA and truncation, end to end through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import GAUSS1D, TINY, compose_train, only_run_dir, run_gan
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

RING = [
    "model=mlp",
    "dataset=ring8",
    "model.g_width=16",
    "model.d_width=16",
    "model.z_dim=8",
    "train.batch_size=64",
    "train.log_every=10",
    "train.sample_every=1000",
    "train.ckpt_every=1000",
]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_resumed_run_keeps_its_best_score_and_only_a_better_one_replaces_best_pt(tmp_path: Path) -> None:
    """The checkpoint's eval state is what a resumed run compares against, so best.pt is never replaced by a worse G."""
    from gan_cli.data import load_dataset
    from gan_cli.metrics.in_training import TrainingEval
    from gan_cli.models import build_models
    from gan_cli.training.tracking import Tracker

    cpu = torch.device("cpu")
    cfg = compose_train(*RING, "eval.every=10", "eval.n=500", "eval.best=hq500")
    data = load_dataset(cfg.dataset, cfg.seed)
    G, D = build_models(cfg.model, data.spec)
    tracker = Tracker(tmp_path, 100, 0)

    def evaluator(best: str, saved=None) -> TrainingEval:
        eval_cfg = cfg.eval.copy()
        eval_cfg.best = best
        return TrainingEval(eval_cfg, cfg.dataset, data, tmp_path, cpu, True, saved)

    fresh = evaluator("hq500")
    assert fresh.run(10, G, D, tracker)  # the first score is the best so far
    saved = fresh.state()
    assert saved == {"best_name": "hq500", "best_value": fresh.latest["hq500"]}
    # the same G scores the same (fixed eval seed): not strictly better than the saved best
    assert not evaluator("hq500", saved).run(20, G, D, tracker)
    assert evaluator("hq500", {**saved, "best_value": saved["best_value"] - 1}).run(30, G, D, tracker)
    # a resumed run that keeps best.pt by another score starts that score afresh
    assert evaluator("modes500", saved).run(40, G, D, tracker)
    tracker.writer.close()
    assert [r["step"] for r in jsonl(tmp_path / "metrics.jsonl")] == [10, 20, 30, 40]


@pytest.mark.slow
def test_eval_every_logs_appends_and_keeps_best(workdir: Path) -> None:
    run_gan(
        "train",
        *RING,
        "train.steps=60",
        "eval.every=10",
        "eval.n=500",
        "eval.best=hq500",
        "model.ema=0.9",
        cwd=workdir,
        check=True,
    )
    run = only_run_dir(workdir)
    records = jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [10, 20, 30, 40, 50, 60]
    best = max(records, key=lambda r: r["hq500"])  # the first of equal maxima: only strictly better replaces best.pt
    best_ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best_ckpt["step"] == best["step"]
    assert best_ckpt["eval"] == {"best_name": "hq500", "best_value": best["hq500"]}
    assert "G_ema" in best_ckpt["models"]
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    assert {"metrics/modes500", "metrics/hq500"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("metrics/hq500")] == [10, 20, 30, 40, 50, 60]

    # gan eval on the run: toy metrics, metrics.json with the protocol; EMA and plain G differ
    proc = run_gan("eval", f"ckpt={run}", "n=1000", cwd=workdir, check=True)
    assert "modes1k" in proc.stdout
    result = json.loads((run / "metrics.json").read_text())
    assert set(result["scores"]) == {"modes1k", "hq1k", "spread1k", "mode_kl1k"}
    assert result["protocol"]["n_fake"] == 1000 and result["protocol"]["generator"] == "ema" and result["step"] == 60
    # a second eval under another protocol adds its scores by name; the first ones stay, each with its own protocol
    run_gan("eval", f"ckpt={run}", "n=500", "ema=false", cwd=workdir, check=True)
    merged = json.loads((run / "metrics.json").read_text())
    assert set(merged["scores"]) == {"modes500", "hq500", "spread500", "mode_kl500"}
    assert {"hq1k", "hq500"} <= set(merged["all_scores"])
    assert merged["all_scores"]["hq1k"]["value"] == result["scores"]["hq1k"]
    assert (
        merged["all_scores"]["hq1k"]["protocol"]["generator"] == "ema"
        and merged["all_scores"]["hq500"]["protocol"]["generator"] == "G"
    )
    run_gan("sample", f"ckpt={run}", "n=50", "out=ema.npy", cwd=workdir, check=True)
    run_gan("sample", f"ckpt={run}", "n=50", "out=raw.npy", "ema=false", cwd=workdir, check=True)
    run_gan("sample", f"ckpt={run}", "n=50", "out=trunc.npy", "truncation=0.5", cwd=workdir, check=True)
    import numpy as np

    ema, raw, trunc = (np.load(workdir / f) for f in ("ema.npy", "raw.npy", "trunc.npy"))
    assert not np.allclose(ema, raw) and not np.allclose(ema, trunc)


@pytest.mark.slow
def test_gan_eval_on_a_tiny_image_checkpoint_and_a_sweep(workdir: Path, lenet_cache: Path) -> None:
    run_gan("train", "-m", "train.steps=4", "loss=ns,lsgan", *TINY, cwd=workdir, check=True)
    sweep = next((workdir / "multirun").glob("*/*"))
    proc = run_gan(
        "eval", f"ckpt={sweep}", "n=300", "metrics=[fid,kid,is,classes]", "truncation=0.8", cwd=workdir, check=True
    )
    names = {
        "fid300_lenet_t0.8",
        "kid300_lenet_t0.8",
        "is300_lenet_t0.8",
        "classes300_lenet_t0.8",
        "class_kl300_lenet_t0.8",
    }
    for job in ("0", "1"):
        result = json.loads((sweep / job / "metrics.json").read_text())
        assert set(result["scores"]) == names
        p = result["protocol"]
        assert (p["backbone"], p["n_real"], p["n_fake"], p["seed"], p["truncation"]) == ("lenet", 256, 300, 0, 0.8)
        assert p["classifier_accuracy"] >= 0.95 and p["split"].startswith("train")
        assert result["scores"]["fid300_lenet_t0.8"] > 0
    lines = (
        proc.stdout.splitlines()
    )  # one row per job, the override that differs as a column; every table line fits 80 columns
    assert any(line.split("│")[0].strip() == "0" and "ns" in line for line in lines) and any(
        "lsgan" in line for line in lines
    )
    assert "shared: train.steps=4" in proc.stdout and max(len(line) for line in lines if "│" in line) <= 80

    bad = run_gan("eval", f"ckpt={sweep}/0", "metrics=[modes]", cwd=workdir)
    assert (
        bad.returncode == 2
        and "defined only for dataset ring8 or grid25" in bad.stderr
        and "Traceback" not in bad.stderr
    )


@pytest.mark.slow
def test_a_conditional_generator_is_scored_on_drawing_the_class_it_is_asked_for(
    workdir: Path, lenet_cache: Path
) -> None:
    run_gan("train", "train.steps=4", "model.cond=concat", *TINY, cwd=workdir, check=True)
    run = only_run_dir(workdir)
    run_gan(
        "eval", f"ckpt={run}", "n=300", cwd=workdir, check=True
    )  # the default scores include cond for a conditional G
    result = json.loads((run / "metrics.json").read_text())
    assert 0 <= result["scores"]["cond_acc300_lenet"] <= 1
    assert result["protocol"]["labels"] == "sample i generated with class i % 10"


@pytest.mark.slow
def test_eval_every_scores_cond_of_a_conditional_generator(tmp_path: Path, lenet_cache: Path) -> None:
    from gan_cli.data import load_dataset
    from gan_cli.metrics.in_training import TrainingEval
    from gan_cli.models import build_models, num_classes
    from gan_cli.training.tracking import Tracker

    cfg = compose_train(*TINY, "model.cond=concat", "eval.every=10", "eval.n=200", "eval.metrics=[cond]")
    data = load_dataset(cfg.dataset, cfg.seed)
    G, D = build_models(cfg.model, data.spec)
    tracker = Tracker(tmp_path, 100, 0)
    evaluator = TrainingEval(
        cfg.eval, cfg.dataset, data, tmp_path, torch.device("cpu"), True, None, classes=num_classes(G)
    )
    evaluator.run(10, G, D, tracker)
    tracker.writer.close()
    assert set(evaluator.latest) == {"cond_acc200_lenet"} and 0 <= evaluator.latest["cond_acc200_lenet"] <= 1


@pytest.mark.slow
def test_gan_eval_reference_scores_held_out_real_digits(workdir: Path, lenet_cache: Path) -> None:
    # n=2500 (all of mnist5k split in two): at 1,000 samples FID's small-sample bias alone is about 4 to 5
    proc = run_gan("eval", "reference=mnist5k", "n=2500", "metrics=[fid,classes,cond]", cwd=workdir, check=True)
    result = json.loads((workdir / "metrics_reference_mnist5k_2500.json").read_text())
    scores = result["scores"]
    assert set(scores) == {"fid2.5k_lenet", "classes2.5k_lenet", "class_kl2.5k_lenet", "cond_acc2.5k_lenet"}
    assert scores["fid2.5k_lenet"] < 5 and scores["cond_acc2.5k_lenet"] >= 0.9 and scores["classes2.5k_lenet"] == 10
    assert (result["protocol"]["n_real"], result["protocol"]["n_fake"]) == (2500, 2500)
    assert "held out" in proc.stdout

    for args, expected in [
        (["reference=nosuch"], "reference='nosuch' is not a dataset. Allowed: cifar10"),
        (["reference=mnist5k"], "use n <= 2500"),  # n=5000 by default: no digits left beside the real set
        (["reference=mnist5k", "ckpt=outputs"], "exclude each other"),
        ([], "or reference=<dataset>"),
    ]:
        bad = run_gan("eval", *args, cwd=workdir)
        assert bad.returncode == 2 and expected in bad.stderr.replace("\n", " ") and "Traceback" not in bad.stderr, (
            args,
            bad.stderr,
        )


@pytest.mark.slow
def test_gauss1d_plots_learned_d_against_the_optimal_d(workdir: Path) -> None:
    run_gan(
        "train",
        *GAUSS1D,
        "train.steps=20",
        "train.log_every=10",
        "eval.every=10",
        "eval.n=500",
        cwd=workdir,
        check=True,
    )
    run = only_run_dir(workdir)
    records = jsonl(run / "metrics.jsonl")
    assert set(records[-1]) == {"step", "mean_gap500", "std_gap500", "dstar_l1500", "seconds", "train_seconds"}
    assert 0 <= records[-1]["dstar_l1500"] <= 1
    assert (run / "figures" / "dstar_step_000020.png").is_file()
