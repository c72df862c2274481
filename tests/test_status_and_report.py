"""status.json never lies (a second Ctrl-C, a killed resume, a refused resume), a divergence names the step it
happened at, a NaN generator is never sampled, a sweep's progress lines say whose they are, and `gan report`'s
figures and rows are readable. Real `gan` processes where signals are involved."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import GAUSS1D, only_run_dir, run_gan, train_until_step

from gan_cli.report import build_report
from gan_cli.report.output import summary_lines
from gan_cli.rundir import RunEnd, read_status, write_status

FAST = [*GAUSS1D, "train.threads=1"]
LONG = ["train.steps=100000", "train.log_every=1", "train.sample_every=100000", "train.ckpt_every=100000"]


def finished_run(cwd: Path, steps: int = 4) -> Path:
    run_gan("train", *FAST, f"train.steps={steps}", "train.log_every=2", cwd=cwd, check=True)
    run = only_run_dir(cwd)
    assert read_status(run)["status"] == "finished"
    return run


# ---------------------------------------------------------------------------------------------
# 21. status.json
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_second_ctrl_c_records_interrupted_and_130(tmp_path: Path) -> None:
    proc = train_until_step(3, [*FAST, *LONG], tmp_path)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)  # two separate deliveries: Python runs one handler for signals that arrive together
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    # the second one lands in the loop (before the step ends) or while the first one's stop winds down: either way
    status = read_status(only_run_dir(tmp_path))
    assert (status["status"], status["exit_code"]) == ("interrupted", 130), status
    # (when the first one's stop had already saved and recorded itself, that record stands: it is true)
    assert status["step"] >= 3 and ("second interrupt" in status["reason"] or "SIGINT received" in status["reason"])


@pytest.mark.slow
def test_a_resumed_run_says_running_while_it_trains_and_a_kill_9_leaves_no_finished(tmp_path: Path) -> None:
    run = finished_run(tmp_path)
    proc = train_until_step(6, [f"resume={run}", *LONG], tmp_path)
    try:
        status = read_status(run)
        assert (status["status"], status["step"]) == ("running", 4), status  # the step the attempt started at
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert read_status(run)["status"] == "running"
    (row,) = build_report([str(run)]).runs
    assert row.status == "interrupted" and "killed" in row.reason  # nobody holds the lock: not running any more


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA, so that device=cuda is refused")
def test_a_resume_refused_after_hydra_starts_leaves_status_json_as_it_was(tmp_path: Path) -> None:
    run = finished_run(tmp_path)
    before = (run / "status.json").read_bytes()
    proc = run_gan("train", f"resume={run}", "train.steps=8", "device=cuda", cwd=tmp_path)
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr
    assert (run / "status.json").read_bytes() == before


def test_a_new_run_refused_in_set_up_still_records_failed(tmp_path: Path) -> None:
    """Only a resume keeps the old record: a new run (a sweep's job, say) that cannot start says why in status.json."""
    proc = run_gan("train", *FAST, "train.steps=2", "train.batch_size=64", "dataset.limit=8", cwd=tmp_path)
    assert proc.returncode == 2
    status = read_status(only_run_dir(tmp_path))
    assert status["status"] == "failed" and "larger than the dataset" in status["reason"]


# ---------------------------------------------------------------------------------------------
# 28. divergence, NaN checkpoints, runs that never started
# ---------------------------------------------------------------------------------------------
def test_a_nan_at_step_1_is_reported_at_step_1_not_at_the_log_that_found_it(tmp_path: Path) -> None:
    proc = run_gan(
        "train", *FAST, "train.steps=30", "train.log_every=30", "optimizer.lr=1e38", cwd=tmp_path
    )  # the first update overflows
    assert proc.returncode == 3, proc.stderr
    message = proc.stderr.replace("\n", " ")
    assert "non-finite (nan or inf) at step 1 " in message and "first seen at the log of step 30" in message
    assert "no step had been logged before it" in message
    assert "diverged at step 1/30" in proc.stdout and "diverged at step 30/30" not in proc.stdout
    status = read_status(only_run_dir(tmp_path))
    assert (status["status"], status["step"]) == ("diverged", 1)


def test_a_checkpoint_with_nan_weights_is_refused_by_gan_sample(tmp_path: Path) -> None:
    run = finished_run(tmp_path, steps=2)
    path = run / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    for t in ckpt["models"]["G"].values():
        if t.is_floating_point():
            t.fill_(float("nan"))
    ckpt["models"].pop("G_ema", None)
    torch.save(ckpt, path)
    out = tmp_path / "s.npy"
    proc = run_gan("sample", f"ckpt={run}", f"out={out}", "device=cpu", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    message = proc.stderr.replace("\n", " ")
    assert "non-finite weights" in message and "every sample it draws would be NaN" in message
    assert len(proc.stderr.strip().split("\n\n")) == 1 and not out.exists()


def _run_dir(folder: Path, log: str = "", end: RunEnd | None = None, checkpoint: bool = False) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={folder.name}"]))
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"train": {"steps": 10}, "eval": {"best": None}}))
    (folder / "train.log").write_text(log)
    if end is not None:
        write_status(folder, end)
    if checkpoint:
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "last.pt").write_bytes(b"")
    return folder


def test_report_lists_run_directories_that_never_started_apart_from_the_runs(tmp_path: Path) -> None:
    _run_dir(tmp_path / "0", end=RunEnd(steps=10, step=10, status="finished", exit_code=0, seconds=1.0))
    _run_dir(tmp_path / "1")  # Ctrl-C or a kill during set-up: Hydra made it, nothing else happened
    _run_dir(tmp_path / "2", log="[2026-01-01 00:00:00,000][INFO] speed paths: amp=off\n", checkpoint=False)
    _run_dir(tmp_path / "3", log="[2026-01-01 00:00:00,000][INFO] step 2/10  loss/D 1.0\n")  # trained, then killed
    report = build_report([str(tmp_path)])
    assert [r.label for r in report.runs] == ["0", "3"]
    assert report.never_started == ["1", "2"] and not report.failed
    assert any(line.startswith("never started") and "1, 2" in line for line in summary_lines(report))
    proc = run_gan("report", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0 and "never started" in proc.stdout
    empty = tmp_path / "empty"
    _run_dir(empty / "1")
    with pytest.raises(Exception, match="ever started"):
        build_report([str(empty)])


def test_a_status_json_left_at_running_by_a_killed_process_reads_as_interrupted(tmp_path: Path) -> None:
    _run_dir(tmp_path / "k", end=RunEnd(steps=10, step=4, status="running", exit_code=0), checkpoint=True)
    (row,) = build_report([str(tmp_path / "k")]).runs
    assert row.status == "interrupted" and "from step 4" in row.reason and "killed" in row.reason


# ---------------------------------------------------------------------------------------------
# 15. a sweep's progress lines
# ---------------------------------------------------------------------------------------------
def test_a_sweep_jobs_progress_lines_carry_its_number_and_a_single_runs_do_not(tmp_path: Path, capsys) -> None:
    from gan_cli.training.run import sweep_job
    from gan_cli.training.tracking import Tracker

    assert sweep_job() is None  # no Hydra: a single run
    for job, start in ((3, "[job 3] step 2/10 "), (None, "step 2/10 ")):
        tracker = Tracker(tmp_path / str(job), 10, 0, job=job)
        for step in (1, 2):
            tracker.add(step, {"loss/D": torch.tensor(1.0), "loss/G": torch.tensor(2.0)})
        tracker.flush(2)
        tracker.finish({}, 2, "finished")
        lines = [line for line in capsys.readouterr().out.splitlines() if "step 2/10" in line and "steps/s" in line]
        assert lines and lines[0].startswith(start), lines


@pytest.mark.slow
def test_a_real_sweep_prefixes_each_jobs_lines(tmp_path: Path) -> None:
    proc = run_gan("train", "-m", *FAST, "train.steps=2", "train.log_every=1", "seed=0,1", cwd=tmp_path, check=True)
    progress = [line for line in proc.stdout.splitlines() if re.search(r"step \d+/2  loss/D", line)]
    assert {line.split("]")[0] for line in progress} == {"[job 0", "[job 1"}, progress
    assert all(line.startswith("[job ") for line in progress)


# ---------------------------------------------------------------------------------------------
# 14. report figures
# ---------------------------------------------------------------------------------------------
def _run_with_curves(folder: Path, seed: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from gan_cli.plots import pyplot

    _run_dir(folder, end=RunEnd(steps=4, step=4, status="finished", exit_code=0, seconds=1.0), checkpoint=True)
    writer = SummaryWriter(log_dir=str(folder))
    for step in (2, 4):
        for i, tag in enumerate(("loss/D", "loss/G", "D(x)", "D(G(z))")):
            writer.add_scalar(tag, float(seed + i + step), step)
        writer.add_scalar("metrics/fid5k_lenet", 10.0 - step - seed, step)
        writer.add_scalar("metrics/hq5k", 0.1 * step, step)
    writer.close()
    (folder / "samples").mkdir()
    pyplot().imsave(str(folder / "samples" / "step_000004.png"), torch.rand(64, 64).numpy(), cmap="gray")


def test_report_figures_are_readable(tmp_path: Path, monkeypatch) -> None:
    import gan_cli.plots
    from gan_cli.report.plots import write_plots

    for seed in range(5):
        _run_with_curves(tmp_path / "sweep" / str(seed), seed)
    figures: dict[str, object] = {}
    real_save = gan_cli.plots.save_figure

    def keep(fig, path: Path) -> Path:
        fig.canvas.draw()  # lay out (constrained layout runs at draw time) before looking at the boxes
        figures[path.name] = (fig, fig.get_size_inches().copy(), [ax for ax in fig.axes if ax.axison])
        box = fig.bbox
        for ax in fig.axes:
            title = ax.title.get_window_extent()
            assert box.y0 <= title.y0 and title.y1 <= box.y1 + 0.5, f"{path.name}: title {ax.get_title()!r} clipped"
        return real_save(fig, path)

    monkeypatch.setattr(gan_cli.plots, "save_figure", keep)
    written = write_plots(build_report([str(tmp_path / "sweep")]), tmp_path)
    assert sorted(p.name for p in written) == ["report_losses.png", "report_samples.png", "report_scores.png"]
    for name, (fig, _, _axes) in figures.items():
        assert fig.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine", name
    _, _, score_axes = figures["report_scores.png"]
    assert sorted(ax.get_title() for ax in score_axes) == ["fid5k_lenet (lower is better)", "hq5k (higher is better)"]
    for name in ("report_losses.png", "report_scores.png"):
        _, _, axes = figures[name]
        for ax in axes:
            legend = ax.get_legend()
            assert legend is not None and len(legend.get_texts()) == 5, (name, ax.get_title())
            assert min(t.get_fontsize() for t in legend.get_texts()) >= 7
    _, size, sample_axes = figures["report_samples.png"]
    rows, cols = 2, 3  # five runs: three panels a row
    assert size[0] / cols >= 4.5 and size[1] / rows >= 4.5, size  # panels large enough to see the samples
    assert len([ax for ax in figures["report_samples.png"][0].axes if ax.images]) == 5


def test_report_json_of_a_sweep_with_a_never_started_job(tmp_path: Path) -> None:
    _run_dir(tmp_path / "0", end=RunEnd(steps=10, step=10, status="finished", exit_code=0, seconds=1.0))
    _run_dir(tmp_path / "1")
    out = tmp_path / "r.json"
    run_gan("report", str(tmp_path), f"out={out}", cwd=tmp_path, check=True)
    assert [r["run"] for r in json.loads(out.read_text())["runs"]] == ["0"]


def test_a_nan_among_the_last_values_is_written_as_strict_json(tmp_path: Path) -> None:
    """A run stopped by a NaN loss keeps its last values in status.json; bare NaN/Infinity there is not JSON, and
    readers other than Python's (jq, JavaScript) refuse the whole file."""
    end = RunEnd(steps=10, step=4, status="diverged", final={"loss/D": float("nan"), "grad_norm/D": float("inf")})
    write_status(tmp_path, end)

    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in status.json")

    status = json.loads((tmp_path / "status.json").read_text(), parse_constant=refuse)
    assert status["final"] == {"loss/D": None, "grad_norm/D": "inf"} and read_status(tmp_path)["step"] == 4
