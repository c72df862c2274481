"""bench/gpu_check.py (`make gpu-check`) on the CPU: the one line and exit 0 without CUDA, the budget guard, and
each measurement run here at smoke size, fp16 with its GradScaler included, so the GPU script's code runs in CI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench.gpu_check import COMBOS, SPEED_CASE, Budget, Plan, _speed_lines, cuda_missing, main, speed_rows

TINY_DCGAN = ["model.g_width=8", "model.d_width=8", "model.z_dim=16", "dataset.limit=256"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only answer")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "RESULTS_gpu.md"
    assert main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [cuda_missing()] and "no CUDA device" in printed[0]
    assert not out.exists()


def test_the_plan_is_refused_before_anything_runs_when_it_cannot_fit_in_10_minutes() -> None:
    plan = Plan(3000, COMBOS, rounds=8, chunk=5, warmup=3, ddp_steps=1000, worlds=(1, 8))
    plan.check()  # the defaults fit
    assert plan.steps() == 3000 + 12 * 2 * 43 + 2 * 1000
    with pytest.raises(SystemExit, match="more than the 15,000"):
        replace(plan, ddp_steps=6000).check()
    assert Plan(3000, COMBOS, 8, 5, 3, 6000, (1,)).steps() == 3000 + 12 * 2 * 43  # one GPU: no DDP runs


def test_speed_rows_run_every_amp_on_the_cpu_through_the_real_step(tmp_path: Path) -> None:
    """amp off, bf16 and fp16 (autocast on the CPU with a GradScaler per network) through train_step, each beside
    the canonical loop; a row the clock no longer allows is skipped and says why."""
    case = replace(SPEED_CASE, overrides=[*SPEED_CASE.overrides, *TINY_DCGAN], batch_size=16)
    combos = [(amp, "off", "off") for amp in ("off", "bf16", "fp16")] + [("off", "on", "off")]
    rows = speed_rows(case, combos, rounds=1, chunk=2, warmup=1, budget=Budget(600))
    assert [r["amp"] for r in rows] == ["off", "bf16", "fp16", "off"]
    for row in rows:
        assert row["gan_sps"] > 0 and row["base_sps"] > 0 and row["finite"], row
        assert f"amp={row['amp']} channels_last={row['channels_last'] == 'on'} compile=False" in row["plan"]
    assert rows[2]["note"].startswith("loss scale ")  # the fp16 row stepped through its GradScaler
    table = _speed_lines(rows)
    assert len(table) == 4 + len(rows) and table[5].startswith("| bf16 | off | off | ") and "x** | n/a |" in table[5]
    late = speed_rows(case, [("off", "off", "on")], 1, 1, 1, Budget(0))
    assert late[0]["note"].startswith("skipped: 0 s of the 0 s budget left")


def test_ddp_rows_read_the_launchers_line_and_the_efficiency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the DDP section makes of two timed runs (the runs themselves are `gan train dist.nproc_per_node=N`,
    tested in test_distributed.py): images/s of the global batch, efficiency against N x one process."""
    import bench.gpu_check as gpu_check
    from bench.helpers import Trained

    line = "distributed: 4 processes (nccl), 64 samples per process, sync_bn on"
    seconds = {1: 10.0, 4: 4.0}
    monkeypatch.setattr(
        gpu_check,
        "timed_run",
        lambda args, world, steps, cwd: Trained(cwd, steps, seconds[world], 0.0, line if world > 1 else ""),
    )
    rows = gpu_check.ddp_rows(["model=dcgan", "train.batch_size=256"], (1, 4), 100, tmp_path)
    assert [r["setup"] for r in rows] == ["one process", line.split(": ", 1)[1]]
    assert rows[1]["ips"] == pytest.approx(100 * 256 / 4.0) and rows[1]["efficiency"] == pytest.approx(10 / 16)
    assert "| 4 | 4 processes (nccl), 64 samples per process, sync_bn on | 6,400 | 62% |" in gpu_check._ddp_lines(rows)


@pytest.mark.slow
def test_the_default_run_and_its_fid_run_on_the_cpu_and_write_the_report(tmp_path: Path, lenet_cache: Path) -> None:
    """`--cpu`: the default run (tiny) and its FID by `gan eval` (lenet at n=200, where a GPU gets Inception at 10k),
    written as on a GPU; the sections `--only` leaves out say so."""
    out = tmp_path / "gpu_check_cpu.md"
    assert main(["--cpu", "--only", "default", "fid", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| +debug=tiny train.steps=4 | 4 |" in text
    assert "fid200_lenet = **" in text
    assert "## DDP: all visible GPUs against one\n\nNot run (`--only` left it out)." in text
