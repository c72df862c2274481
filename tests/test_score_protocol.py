"""A score's name and record say what it compares against (issue 29 items 13, 22 and 10): the image size when it is
not the dataset's own, the checkpoint step it came from, and `gan report` ranks only runs of one dataset and size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import GAUSS1D, compose_train, run_gan

from gan_cli.data import load_dataset
from gan_cli.metrics.backbones import Backbone
from gan_cli.metrics.scorer import Scorer, direction_of


@pytest.fixture
def no_classifier(monkeypatch) -> None:
    """A stand-in backbone: names and protocols are what these tests look at, not the features."""

    def build(name, data, device, inception_weights=None):
        def extract(x: torch.Tensor):
            flat = x.flatten(1)[:, :8].float()
            return flat, torch.zeros(len(x), 10)

        return Backbone(name, extract, {"has_logits": True, "classifier_accuracy": 0.9, "classifier": "/c.pt"})

    monkeypatch.setattr("gan_cli.metrics.backbones.build_backbone", build)


def _scorer(*overrides: str) -> Scorer:
    cfg = compose_train(*overrides).dataset
    return Scorer(load_dataset(cfg, 0), cfg, ["fid", "prdc"], 300, "lenet", torch.device("cpu"), 0)


# ---------------------------------------------------------------------------------------------
# 13. the image size in the name when it is not the dataset's own; precision without recall
# ---------------------------------------------------------------------------------------------
def test_a_resized_dataset_names_its_scores_with_the_size_and_the_native_size_keeps_the_old_names(
    no_classifier,
) -> None:
    native = _scorer("dataset=mnist5k", "dataset.limit=400")
    assert sorted(native.directions()) == [
        "coverage300_lenet",
        "density300_lenet",
        "fid300_lenet",
        "precision300_lenet",
        "recall300_lenet",
    ]
    resized = _scorer("dataset=mnist5k", "dataset.limit=400", "dataset.image_size=16")
    assert "fid300_lenet_16px" in resized.directions() and "fid300_lenet" not in resized.directions()
    assert resized.protocol["image_size"] == 16 and native.protocol["image_size"] == 28
    assert direction_of("fid300_lenet_16px") == "min" and direction_of("recall5k_lenet_16px_t0.7") == "max"
    assert direction_of("fid5k_lenet") == "min"


def test_precision_without_recall_is_printed_with_a_caveat(capsys) -> None:
    from gan_cli.evaluate import print_table

    collapsed = {
        "scores": {"fid300_lenet": 80.0, "precision300_lenet": 1.0, "recall300_lenet": 0.0},
        "protocol": {"classifier_accuracy": 0.97},
        "seconds": 1.0,
        "written": "metrics.json",
    }
    print_table("gan eval: 1 checkpoint", ["step 4"], [collapsed])
    out = " ".join(capsys.readouterr().out.split())
    assert "recall300_lenet is 0" in out and "precision300_lenet alone means nothing" in out, out
    healthy = {**collapsed, "scores": {"precision300_lenet": 0.8, "recall300_lenet": 0.6}}
    print_table("gan eval: 1 checkpoint", ["step 4"], [healthy])
    assert "means nothing" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# 22. an old checkpoint's scores are kept beside the run's, never over them
# ---------------------------------------------------------------------------------------------
def test_scores_of_an_old_checkpoint_are_kept_per_step_and_the_report_says_which_step_it_ranks(
    tmp_path: Path,
) -> None:
    from gan_cli.report import build_report
    from gan_cli.report.output import columns, summary_lines

    run = tmp_path / "run"
    run_gan(
        "train",
        *GAUSS1D,
        "train.steps=4",
        "train.ckpt_every=2",
        "train.log_every=2",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        check=True,
    )
    run_gan("eval", f"ckpt={run}", "n=200", "metrics=[moments]", cwd=tmp_path, check=True)
    latest = json.loads((run / "metrics.json").read_text())["all_scores"]["mean_gap200"]
    assert latest["step"] == 4
    old = run / "checkpoints" / "step_000002.pt"
    run_gan("eval", f"ckpt={old}", "n=200", "metrics=[moments]", cwd=tmp_path, check=True)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["step"] == 2 and saved["checkpoint"] == str(old)  # the eval just made
    assert saved["all_scores"]["mean_gap200"] == latest  # the run's own (latest step) score stands
    assert saved["by_step"]["2"]["mean_gap200"]["value"] == saved["scores"]["mean_gap200"]
    assert saved["by_step"]["4"]["mean_gap200"] == latest
    report = build_report([str(run)], sort="mean_gap200")
    (row,) = report.runs
    assert row.scores["mean_gap200"] == latest["value"] and row.score_steps["mean_gap200"] == 4
    assert dict(columns(report))["scored at"] == ["4"]
    assert any("mean_gap200" in line and "scored at" in line for line in summary_lines(report))


# ---------------------------------------------------------------------------------------------
# 10. gan report ranks runs only against runs of the same data
# ---------------------------------------------------------------------------------------------
def _scored_run(folder: Path, dataset: dict, fid: float) -> Path:
    import yaml

    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"dataset={dataset['name']}"]))
    config = {"train": {"steps": 10}, "eval": {"best": None}, "dataset": {"image_size": None, **dataset}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 10, "fid1k_lenet": fid, "seconds": 1}) + "\n")
    (folder / "train.log").write_text("[2026-01-01 00:00:00,000][INFO] finished at step 10 after 4.5 s; final {}\n")
    return folder


def test_report_ranks_runs_only_within_one_dataset_and_image_size(tmp_path: Path) -> None:
    from gan_cli.report import build_report
    from gan_cli.report.output import columns, summary_lines

    _scored_run(tmp_path / "a", {"name": "mnist5k"}, 9.0)
    _scored_run(tmp_path / "b", {"name": "mnist5k"}, 7.0)
    _scored_run(tmp_path / "c", {"name": "image_folder", "path": "/data/digits8", "image_size": 8}, 1.0)
    report = build_report([str(tmp_path)], sort="fid1k_lenet")
    ranks = {r.label: r.rank for r in report.runs}
    assert ranks == {"b": 1, "a": 2, "c": 1}, ranks  # the 8-px folder is not ranked above the digits
    data = dict(zip(dict(columns(report))["run"], dict(columns(report))["data"]))
    assert data["a"] == data["b"] == "mnist5k 28px" and data["c"].startswith("image_folder") and "8px" in data["c"]
    assert any("ranked within each dataset and image size" in line for line in summary_lines(report))
    single = build_report([str(tmp_path / "a"), str(tmp_path / "b")], sort="fid1k_lenet")
    assert "data" not in dict(columns(single))  # one dataset: the table as before
