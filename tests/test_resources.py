"""Resources a run or a sweep takes (issue 29 item 27): step checkpoints pruned (train.keep_ckpts) and a warning when
they would fill the disk; an absurd model.z_dim refused before it is built; an out-of-memory fixed-noise batch named
as train.n_samples; the jobs a killed sweep never ran listed by its report; joblib workers that end with their sweep."""

from __future__ import annotations

import io
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import TOY, gan_env, only_run_dir, run_gan
from omegaconf import OmegaConf

TOY_RUN = [*TOY, "train.log_every=2", "train.sample_every=100"]


def one_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gan: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


# ---------------------------------------------------------------------------------------------
# train.keep_ckpts and the disk
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_keep_ckpts_keeps_the_newest_step_checkpoints_across_a_resume(tmp_path: Path) -> None:
    run_gan("train", *TOY_RUN, "train.steps=10", "train.ckpt_every=2", "train.keep_ckpts=2", cwd=tmp_path, check=True)
    run = only_run_dir(tmp_path)
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.glob("*.pt")) == ["last.pt", "step_000008.pt", "step_000010.pt"]
    (folder / "step_best_kept.pt").write_bytes(b"mine")  # a name gan never gives: never pruned
    run_gan("train", f"resume={run}", "train.steps=14", cwd=tmp_path, check=True)
    assert sorted(p.name for p in folder.glob("*.pt")) == [
        "last.pt",
        "step_000012.pt",
        "step_000014.pt",
        "step_best_kept.pt",
    ]


def test_a_negative_keep_ckpts_is_refused(tmp_path: Path) -> None:
    error = one_error(run_gan("train", *TOY_RUN, "train.keep_ckpts=-1", cwd=tmp_path))
    assert "train.keep_ckpts=-1" in error and "null" in error
    assert not (tmp_path / "outputs").exists()


def _state(z: int = 16, width: int = 64) -> SimpleNamespace:
    G, D = torch.nn.Linear(z, width), torch.nn.Linear(width, 1)
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    return SimpleNamespace(G=G, D=D, ema=None, opt_g=opt_g, opt_d=opt_d, fixed_z=torch.zeros(8, z), step=0)


def test_the_checkpoint_size_estimate_matches_a_saved_checkpoint() -> None:
    from gan_cli.training.state import checkpoint_bytes

    state = _state(z=64, width=512)
    estimate = checkpoint_bytes(state)  # before any step: Adam's moments do not exist yet
    for opt, net in ((state.opt_g, state.G), (state.opt_d, state.D)):
        net(torch.zeros(2, net.in_features)).sum().backward()
        opt.step()
    buffer = io.BytesIO()
    payload = {"G": state.G.state_dict(), "D": state.D.state_dict(), "fixed_z": state.fixed_z}
    torch.save({**payload, "opt": [state.opt_g.state_dict(), state.opt_d.state_dict()]}, buffer)
    assert 0.9 < estimate / len(buffer.getvalue()) < 1.1


def test_a_warning_when_the_step_checkpoints_would_fill_the_disk(tmp_path: Path, monkeypatch) -> None:
    from gan_cli.training import state as state_module

    state = _state()
    each = state_module.checkpoint_bytes(state)
    tc = OmegaConf.create({"steps": 2000, "ckpt_every": 1, "keep_ckpts": None})
    monkeypatch.setattr(state_module.shutil, "disk_usage", lambda _: SimpleNamespace(free=100 * each))
    text = state_module.checkpoint_disk_warning(state, tmp_path, tc, best=False)
    assert text is not None and "\n" not in text
    assert "2000 step checkpoints" in text and "train.keep_ckpts=" in text and "train.ckpt_every=" in text
    kept = int(re.search(r"train\.keep_ckpts=(\d+)\)", text).group(1))
    every = int(re.search(r"train\.ckpt_every=(\d+)\)", text).group(1))
    for advice in ({"keep_ckpts": kept}, {"ckpt_every": every}):  # each suggestion fits
        assert state_module.checkpoint_disk_warning(state, tmp_path, OmegaConf.merge(tc, advice), best=False) is None


# ---------------------------------------------------------------------------------------------
# model.z_dim and train.n_samples
# ---------------------------------------------------------------------------------------------
def test_an_absurd_z_dim_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    start = time.monotonic()
    error = one_error(run_gan("train", *TOY_RUN, "model.z_dim=100000000", cwd=tmp_path))
    assert "model.z_dim=100,000,000" in error and "weights per latent dimension" in error, error
    assert re.search(r"model\.z_dim up to [\d,]+ fits", error), error
    assert time.monotonic() - start < 60 and not (tmp_path / "outputs").exists()


def test_the_z_dim_check_draws_no_random_numbers() -> None:
    """A z_dim it lets through trains bit for bit as before: the meta-device builds draw nothing."""
    from helpers import compose_train

    from gan_cli.data.spec import DataSpec
    from gan_cli.training.sizes import check_latent_size

    cfg = compose_train(*TOY, "model.z_dim=4096")
    before = torch.get_rng_state()
    check_latent_size(cfg, DataSpec("ring8", (2,), 8), torch.device("cpu"))
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.slow
def test_out_of_memory_in_the_fixed_noise_grid_names_train_n_samples(tmp_path: Path) -> None:
    """1,000,000 fixed-noise images through the tiny DCGAN in one pass: 3 GB for its first layer, over a 4 GB cap on
    the process's address space (so the test never takes the machine's memory)."""
    from helpers import TINY

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * 10**9, 4 * 10**9))

    proc = subprocess.run(
        [sys.executable, "-m", "gan_cli", "train", *TINY, "train.steps=4", "train.n_samples=1000000"],
        cwd=tmp_path, env=gan_env(), capture_output=True, text=True, timeout=300, preexec_fn=cap,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("gan: error:")][-1]
    assert "Out of memory" in error and "lower train.n_samples (now 1,000,000" in error, error
    assert "train.batch_size" not in error


# ---------------------------------------------------------------------------------------------
# a killed sweep: its report, its workers
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_report_of_a_stopped_sweep_lists_the_jobs_that_never_ran(tmp_path: Path) -> None:
    from gan_cli.report.output import summary_lines
    from gan_cli.report.runs import build_report

    sweep = tmp_path / "sweep"
    run_gan("train", *TOY_RUN, "train.steps=2", f"hydra.run.dir={sweep / '0'}", cwd=tmp_path, check=True)
    (sweep / "1").mkdir()  # made, then stopped during set-up: never started
    hydra = {
        "sweep": {"dir": str(sweep), "subdir": "${hydra.job.num}"},
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "overrides": {"task": [*TOY_RUN, "seed=0,1", "loss=ns,hinge"]},
    }
    OmegaConf.save(OmegaConf.create({"hydra": hydra}), sweep / "multirun.yaml")
    report = build_report([str(sweep)])
    assert report.never_ran == ["2 (seed=1 loss=ns)", "3 (seed=1 loss=hinge)"]
    assert any(line.startswith("never ran") and "2 (seed=1 loss=ns)" in line for line in summary_lines(report))


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _alive(pid: int) -> bool:
    """Running (an ended process that nobody has reaped yet, a zombie, holds no memory)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_joblib_workers_end_when_the_sweep_is_killed(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    args = ["train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TOY, "train.threads=1",
            "train.steps=1000000", "train.log_every=1000", "train.sample_every=1000000", "seed=0,1",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "gan_cli", *args], cwd=tmp_path, env=gan_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not any((sweep / str(n) / "status.json").exists() for n in (0, 1)) and time.monotonic() < deadline:
            time.sleep(0.2)  # a worker is training
        workers = _children(proc.pid)
        assert workers, "the sweep started no worker processes"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 20
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived the sweep they belong to"
