"""What the tests share besides fixtures (those are in conftest.py): the real `gan` command run in a subprocess, the
tiny override lists every CLI test trains with, and the comparisons of checkpoints and state dicts.

Test modules import from here (`from helpers import ...`; pyproject's pytest `pythonpath` lists tests/), never from
conftest or from one another."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# `make test` runs one pytest worker per core (pytest-xdist): each worker, and each `gan` it starts,
# then uses one thread, so the workers share the cores instead of oversubscribing them.
UNDER_XDIST = "PYTEST_XDIST_WORKER" in os.environ
THREADS = "1" if UNDER_XDIST else "2"
if UNDER_XDIST:
    import torch

    torch.set_num_threads(1)

# ---------------------------------------------------------------------------------------------
# tiny cases: the override lists the CLI tests train with
# ---------------------------------------------------------------------------------------------
# tiny widths and few steps on the default DCGAN and mnist5k: every CLI test trains in seconds on a 2-core CPU.
# conf/debug/tiny.yaml is the same list as a preset (`gan train +debug=tiny`); test_config checks that they agree.
TINY = [
    "model.g_width=8",
    "model.d_width=8",
    "model.z_dim=16",
    "train.batch_size=16",
    "train.log_every=2",
    "train.sample_every=4",
    "train.ckpt_every=4",
    "dataset.limit=256",
    "train.num_workers=0",
]
# the toy case: a tiny MLP GAN on ring8's 2-D points, for the tests of runs and resumes that need no images
TOY_SIZES = ["model.g_width=8", "model.d_width=8", "model.z_dim=4", "train.batch_size=32", "train.num_workers=0"]
TOY = ["model=mlp", "dataset=ring8", *TOY_SIZES]
# the fixed 1-D example: G(z) = z + theta against N(7, 1), the smallest model gan has
GAUSS1D = ["model=shift", "dataset=gauss1d"]
# two steps, with a sample grid and a checkpoint at the last one
TWO_STEPS = ["train.steps=2", "train.sample_every=2", "train.ckpt_every=2"]


def model_cfg(**over):
    """The model group at its defaults, at tiny widths (z 8, G and D 4 wide), with `over` on top: for building
    networks in process."""
    from omegaconf import OmegaConf

    from gan_cli.config import group_defaults

    return OmegaConf.merge(group_defaults("model"), {"z_dim": 8, "g_width": 4, "d_width": 4}, over)


def _mnist_spec():
    from gan_cli.data.spec import DataSpec

    return DataSpec("mnist5k", (1, 28, 28), 10)


MNIST = _mnist_spec()  # what a model built for mnist5k sees: 1 x 28 x 28 images, 10 classes


# ---------------------------------------------------------------------------------------------
# the real `gan` command
# ---------------------------------------------------------------------------------------------
def gan_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = (
        str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    )  # this checkout's code, wherever gan is installed
    env.setdefault("OMP_NUM_THREADS", THREADS)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


# `gan` runs in a fresh process forked from a server that has imported torch and gan_cli once (multiprocessing's
# forkserver): the same main(), exit codes, stdout and stderr as `python -m gan_cli`, without paying the ~5 s of
# imports on each of the suite's hundred-odd commands (torch._dynamo too: torch.optim's first optimizer imports it,
# 1.4 s a command). Tests that send signals use real subprocesses
# (train_until_step); GAN_TEST_SUBPROCESS=1 runs every command as one.
_FORKSERVER = None


def _forkserver():
    global _FORKSERVER
    if _FORKSERVER is None:
        import multiprocessing

        _FORKSERVER = multiprocessing.get_context("forkserver")
        _FORKSERVER.set_forkserver_preload(
            ["torch", "torch._dynamo", "gan_cli.cli", "gan_cli.training.run", "gan_cli.sample", "gan_cli.evaluate"]
        )
    return _FORKSERVER


def _gan_in_child(args: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """The child: its own working directory, environment and output files, then gan's main() as the console script runs it."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
    import torch

    torch.set_num_threads(int(env.get("OMP_NUM_THREADS", "1")))
    from gan_cli.cli import main

    sys.argv = ["gan", *args]
    main(args)


def _run_forked(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        child = _forkserver().Process(target=_gan_in_child, args=(list(args), str(cwd), gan_env(), out, err))
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(["gan", *args], timeout)
        read = lambda path: open(path, encoding="utf-8", errors="replace").read() if os.path.exists(path) else ""  # noqa: E731
        return subprocess.CompletedProcess(["gan", *args], child.exitcode, read(out), read(err))


def run_gan(
    *args: str, cwd: Path, timeout: float = 300, check: bool = False, own_process: bool = False
) -> subprocess.CompletedProcess:
    """`gan ARGS` as a user would run it (python -m gan_cli is the console script's entry point). `own_process`: a real
    subprocess, for commands whose own children must be shut down at exit as a console script does (joblib's workers)."""
    if own_process or os.environ.get("GAN_TEST_SUBPROCESS") == "1":
        proc = subprocess.run(
            [sys.executable, "-m", "gan_cli", *args],
            cwd=cwd,
            env=gan_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    else:
        proc = _run_forked(list(args), cwd, timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"gan {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def train_until_step(step: int, args: list[str], cwd: Path) -> subprocess.Popen:
    """A `gan train` subprocess, returned once its log line for `step` is out (training really runs)."""
    env = {**gan_env(), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gan_cli", "train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith(f"step {step}/"):
            break
    return proc


def compose_train(*overrides: str):
    """The composed `gan train` config, as Hydra builds it for the CLI."""
    from hydra import compose, initialize_config_dir

    from gan_cli.config import config_dir, register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


# ---------------------------------------------------------------------------------------------
# what a run left behind
# ---------------------------------------------------------------------------------------------
def only_run_dir(cwd: Path) -> Path:
    """The single run directory `gan train` made under cwd/outputs."""
    runs = [p for p in (cwd / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def load_last(run_dir: Path) -> dict:
    import torch

    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def resume_from_midway(tmp_path: Path, args: list[str]) -> tuple[dict, dict]:
    """(uninterrupted 8-step run, the same run resumed from its step-4 checkpoint in a copy of the run dir).

    Resuming the checkpoint an interruption at step 4 leaves keeps train.steps=8, so decaying schedules
    are planned for the same length in both runs. `args` must save a checkpoint at step 4 (train.ckpt_every)."""
    import shutil

    run_gan("train", *args, "train.steps=8", cwd=tmp_path, check=True)
    straight = only_run_dir(tmp_path)
    copy_dir = tmp_path / "resumed"
    shutil.copytree(straight, copy_dir)
    (copy_dir / "checkpoints" / "last.pt").unlink()
    proc = run_gan("train", f"resume={copy_dir / 'checkpoints' / 'step_000004.pt'}", cwd=tmp_path, check=True)
    assert "step 8/8" in proc.stdout
    return load_last(straight), load_last(copy_dir)


def scalar_tags(run_dir: Path) -> set[str]:
    """The scalar tags TensorBoard reads from a run directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return set(acc.Tags()["scalars"])


def sample_array(workdir: Path, run: Path, **options):
    """`gan sample` in this process (tests run the CLI path itself once each): saves a process start per call."""
    import numpy as np
    from omegaconf import OmegaConf

    from gan_cli.config import command_defaults
    from gan_cli.sample import sample

    out = workdir / "s.npy"
    cfg = OmegaConf.merge(command_defaults("sample"), {"ckpt": str(run), "out": str(out), "device": "cpu", **options})
    sample(cfg)
    return np.load(out)


# ---------------------------------------------------------------------------------------------
# comparisons
# ---------------------------------------------------------------------------------------------
def assert_same(a, b, where: str = "", atol: float | None = None) -> None:
    """Deep equality of nested dicts, lists and tuples of tensors and plain values (checkpoints, state dicts,
    step statistics): the same keys and lengths, tensors equal bit for bit (torch.equal), anything else by ==.
    With `atol`, floating-point tensors may differ by less than atol instead (same shape); other tensors stay exact."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{where}: a tensor against {type(b).__name__}"
        if atol is not None and a.is_floating_point():
            assert a.shape == b.shape, f"{where}: shapes {tuple(a.shape)} != {tuple(b.shape)}"
            gap = (a.float() - b.float()).abs().max().item() if a.numel() else 0.0
            assert gap < atol, f"{where} differs by {gap:.3g} (>= {atol:g})"
        else:
            assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}", atol)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]", atol)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# what a resumed run carries on with: weights (EMA's too, and a growing model's stage and alpha), the whole optimizer
# state (exp_avg, exp_avg_sq, step, param_groups), schedulers, the EMA's update count, loss scales, the fixed noise of
# the progress grids, loss state (historical averages) and the RNG. Not evaluation's best: a run stopped early was
# also scored where it stopped.
TRAINING_STATE = ("models", "optimizers", "schedulers", "ema_state", "grad_scalers", "fixed_z", "loss_state", "rng")


def assert_same_training_state(a: dict, b: dict) -> None:
    """Two checkpoints at the same step hold the same training state, bit for bit: a resumed run against an
    uninterrupted one. A part neither checkpoint has (ema_state without an EMA) is skipped."""
    assert (a["step"], a["batches_done"]) == (b["step"], b["batches_done"])
    for part in TRAINING_STATE:
        assert (part in a) == (part in b), f"{part} is in one checkpoint only"
        if part in a:
            assert_same(a[part], b[part], part)


DOCS_EXAMPLE = "## A complete example"  # the section of docs/components.md that is a test


def docs_example(dest: Path) -> list[list[str]]:
    """Write the files of docs/components.md's complete example under `dest`; return its commands as argument lists."""
    text = (REPO / "docs" / "components.md").read_text()
    section = text[text.index(DOCS_EXAMPLE) :]
    section = section[: section.index("\n## ", len(DOCS_EXAMPLE))]
    files = re.findall(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```", section, re.S)
    assert {p for p, _ in files} >= {
        "my_gan/parts.py",
        "my_conf/model/tiny.yaml",
        "my_conf/loss/abc.yaml",
        "my_conf/dataset/blobs.yaml",
    }
    for path, body in files:
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        (dest / path).write_text(body)
    commands = re.search(r"<!-- command -->\n```bash\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    return [line.split("#")[0].split()[1:] for line in commands.strip().splitlines()]


# ---------------------------------------------------------------------------------------------
# generated colour images: the 32 x 32 RGB path without a colour dataset on disk
# ---------------------------------------------------------------------------------------------
SHAPES = ("disc", "square", "cross")


def write_shapes_folder(root: Path, per_class: int = 24, side: int = 32, labelled: bool = True, seed: int = 0) -> Path:
    """Coloured shapes (a disc, a square or a cross of a random colour, size and place on a random dark background)
    as side x side RGB PNGs: one subfolder per shape when `labelled`, else all in `root`. A stand-in for CIFAR-10
    that CI can write in a second: three classes a classifier tells apart, and colour that G must get right."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    for k, shape in enumerate(SHAPES):
        folder = root / shape if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = np.empty((side, side, 3), dtype=np.uint8)
            image[:] = rng.integers(0, 80, 3)
            r = rng.uniform(side / 6, side / 3)
            cy, cx = rng.uniform(r, side - r, 2)
            if shape == "disc":
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            elif shape == "square":
                mask = (abs(yy - cy) <= r * 0.8) & (abs(xx - cx) <= r * 0.8)
            else:
                mask = ((abs(yy - cy) <= r / 4) & (abs(xx - cx) <= r)) | ((abs(xx - cx) <= r / 4) & (abs(yy - cy) <= r))
            image[mask] = rng.integers(120, 256, 3)
            Image.fromarray(image).save(folder / f"{shape}_{k}_{i:03d}.png")
    return root
