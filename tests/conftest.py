"""Shared helpers: run the real `gan` command in a subprocess, in a temporary working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# `make test` runs one pytest worker per core (pytest-xdist): each worker, and each `gan` it starts,
# then uses one thread, so the workers share the cores instead of oversubscribing them.
UNDER_XDIST = "PYTEST_XDIST_WORKER" in os.environ
THREADS = "1" if UNDER_XDIST else "2"
if UNDER_XDIST:
    import torch

    torch.set_num_threads(1)
# tiny widths and few steps: every CLI test trains in seconds on a 2-core CPU
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
# imports on each of the suite's hundred-odd commands. Tests that send signals use real subprocesses
# (train_until_step); GAN_TEST_SUBPROCESS=1 runs every command as one.
_FORKSERVER = None


def _forkserver():
    global _FORKSERVER
    if _FORKSERVER is None:
        import multiprocessing

        _FORKSERVER = multiprocessing.get_context("forkserver")
        _FORKSERVER.set_forkserver_preload(
            ["torch", "gan_cli.cli", "gan_cli.training.run", "gan_cli.sample", "gan_cli.evaluate"]
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


def only_run_dir(cwd: Path) -> Path:
    """The single run directory `gan train` made under cwd/outputs."""
    runs = [p for p in (cwd / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def compose_train(*overrides: str):
    """The composed `gan train` config, as Hydra builds it for the CLI."""
    from hydra import compose, initialize_config_dir

    from gan_cli.config import config_dir, register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def load_last(run_dir: Path) -> dict:
    import torch

    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


@pytest.fixture(scope="session")
def lenet_cache(tmp_path_factory) -> Path:
    """GAN_CACHE_DIR for the rest of the session (CLI subprocesses too): the mnist5k classifier is trained into it once.

    Under pytest-xdist the workers share one cache beside their own temp dirs, and the first to get
    there trains the classifier while the others wait on the lock."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    cache = (root.parent if UNDER_XDIST else root) / "gan_cache"
    cache.mkdir(exist_ok=True)
    previous = os.environ.get("GAN_CACHE_DIR")
    os.environ["GAN_CACHE_DIR"] = str(cache)
    with FileLock(str(cache) + ".lock"):
        _train_mnist5k_classifier()
    yield cache
    if previous is None:
        os.environ.pop("GAN_CACHE_DIR", None)
    else:
        os.environ["GAN_CACHE_DIR"] = previous


def _train_mnist5k_classifier() -> None:
    import torch
    from omegaconf import OmegaConf

    from gan_cli.data import load_dataset
    from gan_cli.metrics.backbones import build_backbone

    data = load_dataset(OmegaConf.create({"name": "mnist5k", "limit": None, "image_size": None}), 0)
    build_backbone("lenet", data, torch.device("cpu"))


@pytest.fixture(scope="session")
def mnist5k():
    from omegaconf import OmegaConf

    from gan_cli.data import load_dataset

    return load_dataset(OmegaConf.create({"name": "mnist5k", "limit": None, "image_size": None}), 0)
