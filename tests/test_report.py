"""`gan report` and the report at the end of every sweep: rows, ranking by the metric's direction, failed jobs
with their reason, the files and figures; parallel jobs (joblib) and an Optuna search end to end."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml
from helpers import run_gan
from rich.console import Console

from gan_cli.errors import GanError
from gan_cli.report import build_report, parse_arguments, print_report, read_run
from gan_cli.rundir import RunEnd, RunLock, write_status
from gan_cli.runtime import parallel_jobs, set_threads

# ring8 at toy size: every job trains 4 steps and scores 200 samples at the end
SCORED_TOY = [
    "dataset=ring8",
    "model=mlp",
    "model.g_width=8",
    "model.d_width=8",
    "train.steps=4",
    "train.log_every=2",
    "train.sample_every=4",
    "train.ckpt_every=4",
    "eval.every=4",
    "eval.n=200",
]


def sweep_dir(cwd: Path) -> Path:
    (found,) = list((cwd / "multirun").glob("*/*"))
    return found


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, object]:
    """A real 2x2 sweep in which one job fails: a batch of 32 from a dataset limited to 24 points."""
    cwd = tmp_path_factory.mktemp("sweep")
    proc = run_gan("train", "-m", "train.batch_size=16,32", "dataset.limit=24,400", *SCORED_TOY, cwd=cwd)
    return sweep_dir(cwd), proc


@pytest.mark.slow
def test_the_sweep_ends_with_its_report_failed_job_included(swept) -> None:
    folder, proc = swept
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "1 of 4 sweep jobs failed" in proc.stderr
    text = (folder / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    assert len(rows) == 4
    failed = [r for r in rows if "| failed |" in r]
    assert len(failed) == 1 and "| 32 | 24 |" in failed[0]
    assert "larger than the dataset" in text  # the failed job's reason, from its train.log
    assert "Shared by every run:" in text and "`dataset=ring8`" in text
    assert "report" in proc.stdout and "failed: train.batch_size=32 is larger than the dataset" in proc.stdout.replace(
        "\n", " "
    )


@pytest.mark.slow
def test_gan_report_ranks_writes_files_and_figures(swept, tmp_path: Path) -> None:
    folder, _ = swept
    out = tmp_path / "r"
    proc = run_gan(
        "report",
        str(folder),
        "sort=hq200",
        f"out={out}.csv",
        f"out={out}.json",
        f"out={out}.md",
        "plots=true",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    with open(f"{out}.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    columns = list(rows[0])
    for name in (
        "rank",
        "run",
        "train.batch_size",
        "dataset.limit",
        "status",
        "reason",
        "step",
        "steps",
        "seconds",
        "hq200",
        "modes200",
        "loss/D",
        "loss/G",
        "D(x)",
        "D(G(z))",
    ):
        assert name in columns, columns
    assert "dataset" not in columns and "eval.every" not in columns  # shared by all: printed once, not a column
    finished = [r for r in rows if r["status"] == "finished"]
    assert len(finished) == 3 and all(r["step"] == "4" for r in finished)
    assert [r["rank"] for r in finished] == ["1", "2", "3"]  # ranked rows first, in rank order
    hq = [float(r["hq200"]) for r in finished]
    assert hq == sorted(hq, reverse=True)  # hq: higher is better
    failed = rows[-1]
    assert failed["status"] == "failed" and failed["rank"] == "" and "larger than the dataset" in failed["reason"]
    data = json.loads(Path(f"{out}.json").read_text())
    assert data["sort"] == "hq200" and data["direction"] == "max" and data["shared"]["dataset"] == "ring8"
    assert [r["run"] for r in data["runs"]] == [r["run"] for r in rows]
    best = rows[0]
    assert f"best: {best['run']} (hq200" in proc.stdout and f"gan sample ckpt={best['path']}" in proc.stdout
    for name in ("report_losses.png", "report_scores.png", "report_samples.png"):
        png = tmp_path / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name


@pytest.mark.slow
def test_ranking_follows_each_metric_direction(swept) -> None:
    folder, _ = swept
    for name, direction in (("hq200", "max"), ("mode_kl200", "min"), ("spread200", "one")):
        report = build_report([str(folder)], sort=name)
        assert report.direction == direction
        values = [r.scores[name] for r in report.runs if r.rank is not None]
        key = {"max": lambda v: -v, "min": lambda v: v, "one": lambda v: abs(math.log(v)) if v > 0 else math.inf}[
            direction
        ]
        assert [key(v) for v in values] == sorted(key(v) for v in values)


@pytest.mark.slow
def test_the_table_fits_80_columns(swept) -> None:
    folder, _ = swept
    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    print_report(build_report([str(folder)]), console)
    text = console.export_text()
    table_lines = [line for line in text.splitlines() if any(c in line for c in "┃│━")]
    assert (
        len(table_lines) >= 3 * 6 and max(len(line) for line in table_lines) <= 80
    )  # commands and paths wrap in the terminal
    for header in ("train.batch_size", "dataset.limit", "status", "hq200", "loss/D", "D(G(z))"):
        assert header in text  # whole headers, never 'trai…'


def fake_run(
    folder: Path, overrides: list[str], score: float | None = None, end: RunEnd | None = None, log: str = ""
) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"train": {"steps": 10}, "eval": {"best": None}}))
    if score is not None:
        (folder / "metrics.jsonl").write_text(
            json.dumps({"step": 10, "fid5k_lenet": score + 1, "seconds": 1})
            + "\n"
            + json.dumps({"step": 10, "fid5k_lenet": score, "seconds": 1})
            + "\n"
        )
    if end is not None:
        write_status(folder, end)
    (folder / "train.log").write_text(log)
    return folder


def test_status_comes_from_status_json_then_the_log(tmp_path: Path) -> None:
    fake_run(tmp_path / "a", ["seed=0"], 20.0, RunEnd(steps=10, step=10, status="finished", exit_code=0, seconds=3.0))
    fake_run(
        tmp_path / "b",
        ["seed=1"],
        10.0,
        log="[2026-01-01 00:00:00,000][INFO] finished at step 10 after 4.5 s; final {}\n",
    )
    fake_run(tmp_path / "c", ["seed=2"], log="[2026-01-01 00:00:00,000][ERROR] dataset.path='x' is not a folder.\n")
    fake_run(tmp_path / "d", ["seed=3"], log="[2026-01-01 00:00:00,000][INFO] step 2/10\n")  # killed: no end recorded
    fake_run(
        tmp_path / "e",
        ["seed=4"],
        30.0,
        RunEnd(steps=10, step=6, status="diverged", exit_code=3, reason="Training diverged: ..."),
    )
    report = build_report([str(tmp_path)])
    by = {r.label: r for r in report.runs}
    assert (by["a"].status, by["a"].seconds) == ("finished", 3.0)
    assert (by["b"].status, by["b"].step, by["b"].seconds) == ("finished", 10, 4.5)  # a run from before status.json
    assert by["c"].status == "failed" and by["c"].reason == "dataset.path='x' is not a folder."
    assert by["d"].status == "interrupted" and "killed" in by["d"].reason
    assert by["e"].status == "diverged" and by["e"].rank is None  # a diverged run's score is not ranked
    assert report.sort == "fid5k_lenet" and [r.label for r in report.runs[:2]] == [
        "b",
        "a",
    ]  # fid: lower first, last line wins
    assert report.varied == ["seed"] and report.shared == {}
    with RunLock(tmp_path / "a"):
        assert read_run(tmp_path / "a", "a").status == "running"


def test_bad_report_arguments_are_one_paragraph(tmp_path: Path) -> None:
    with pytest.raises(GanError, match="at least one directory"):
        build_report([])
    with pytest.raises(GanError, match="is not a directory"):
        build_report([str(tmp_path / "nope")])
    with pytest.raises(GanError, match="no run directories"):
        build_report([str(tmp_path)])
    with pytest.raises(GanError, match="must end in .md, .csv, .json"):
        parse_arguments(["out=r.txt"])
    with pytest.raises(GanError, match="unknown option 'sorted'"):
        parse_arguments(["sorted=fid"])
    fake_run(tmp_path / "a", ["seed=0"], 1.0)
    with pytest.raises(GanError, match="sort='hq2.5k': no run has this score. Scores found: fid5k_lenet"):
        build_report([str(tmp_path)], sort="hq2.5k")
    proc = run_gan("report", str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("gan: error: gan report:") and "Traceback" not in proc.stderr


def test_threads_follow_the_option_the_environment_and_the_parallel_jobs(monkeypatch) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr("gan_cli.runtime.usable_cores", lambda: 8)
        assert set_threads(None, parallel=2)[0] == 4 and torch.get_num_threads() == 4
        assert set_threads(None, parallel=16)[0] == 1
        assert parallel_jobs(-1) == 8 and parallel_jobs(-2) == 7 and parallel_jobs(3) == 3 and parallel_jobs(None) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert set_threads(None, parallel=1) == (3, "OMP_NUM_THREADS")
        assert set_threads(2, parallel=4) == (2, "train.threads") and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_parallel_jobs_with_joblib_share_the_cores(tmp_path: Path) -> None:
    proc = run_gan(
        "train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "loss=ns,lsgan",
        "train.threads=1",
        *SCORED_TOY,
        cwd=tmp_path,
        timeout=600,
        own_process=True,
    )
    assert proc.returncode == 0, proc.stderr
    folder = sweep_dir(tmp_path)
    jobs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]  # both jobs in the one sweep directory, though run by two processes
    for job in jobs:
        assert "threads=1 (train.threads)" in (job / "train.log").read_text()  # torch.get_num_threads() in the job
        assert json.loads((job / "status.json").read_text())["status"] == "finished"
    assert "| ns |" in (folder / "report.md").read_text() and "| lsgan |" in (folder / "report.md").read_text()


@pytest.mark.slow
def test_optuna_search_returns_the_best_of_its_trials(tmp_path: Path) -> None:
    proc = run_gan(
        "train",
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.sampler.seed=0",
        "optimizer.lr=tag(log, interval(1e-4, 1e-1))",
        "eval.best=hq200",
        *SCORED_TOY,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    folder = sweep_dir(tmp_path)
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    returned = {}
    for job in sorted(p for p in folder.iterdir() if p.is_dir()):
        lines = (job / "metrics.jsonl").read_text().splitlines()
        returned[job.name] = json.loads(lines[-1])["hq200"]  # what gan train returned: the last eval.best
    assert len(returned) == 4
    assert results["best_value"] == pytest.approx(max(returned.values()))  # hq: maximised, the direction gan set
    lrs = {yaml.safe_load((folder / j / ".hydra" / "overrides.yaml").read_text())[0] for j in returned}
    assert len(lrs) == 4 and all(lr.startswith("optimizer.lr=") for lr in lrs)  # four sampled learning rates
    assert (
        len(
            [
                line
                for line in (folder / "report.md").read_text().splitlines()
                if line.startswith("| ") and "finished" in line
            ]
        )
        == 4
    )


def test_a_search_without_a_score_is_refused_before_it_starts(tmp_path: Path) -> None:
    proc = run_gan(
        "train", "-m", "hydra/sweeper=optuna", "optimizer.lr=interval(1e-4, 1e-2)", *SCORED_TOY[:-2], cwd=tmp_path
    )
    assert proc.returncode == 2 and "eval.every > 0" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "multirun").exists()
