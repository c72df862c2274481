"""A resume reads a run directory as data: nothing saved there (overrides, search path, group options) may make gan
run code. The first case is the attack as reported: three lines added to .hydra/overrides.yaml that had Hydra's
callback machinery unpickle a payload shipped in the run directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers import GAUSS1D, run_gan

CALLBACK = [
    "+hydra.callbacks.pwn._target_=torch.load",
    "+hydra.callbacks.pwn.f='${hydra.run.dir}/evil.pt'",
    "+hydra.callbacks.pwn.weights_only=false",
]


class _Payload:
    """Unpickling it runs `touch MARKER` (what torch.load(weights_only=False) of the shipped file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    run = root / "run"
    run_gan(
        "train",
        *GAUSS1D,
        "train.steps=2",
        "train.threads=1",
        f"hydra.run.dir={run}",
        cwd=root,
        check=True,
    )
    return run


def _planted(finished_run: Path, workdir: Path, extra: list[str]) -> tuple[Path, Path]:
    """A copy of the finished run with `extra` appended to its saved overrides and the payload beside them."""
    run = workdir / "run"
    shutil.copytree(finished_run, run)
    marker = workdir / "PWNED"
    torch.save(_Payload(marker), run / "evil.pt")
    saved = run / ".hydra" / "overrides.yaml"
    saved.write_text(yaml.safe_dump(yaml.safe_load(saved.read_text()) + extra))
    return run, marker


def _assert_refused(proc, run: Path, marker: Path, names: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert names in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not marker.exists(), "the payload ran"
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 2  # nothing trained over it


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (CALLBACK, "'+hydra.callbacks.pwn._target_=torch.load'"),
        (["hydra.callbacks.report._target_=torch.load"], "hydra.callbacks.report._target_=torch.load"),
        (["hydra/launcher=joblib"], "'hydra/launcher=joblib'"),
        (["+hydra.sweeper.params.x=1"], "'+hydra.sweeper.params.x=1'"),
        (["+hydra.job.env_set.GAN_ALLOW_TARGETS=os"], "hydra.job.env_set"),
        (["+model.args.net._target_=os.system"], "model.args.net._target_='os.system'"),
        (["+loss.args.deep.deeper._target_=os.system"], "loss.args.deep.deeper._target_='os.system'"),
        (["+dataset.args={hook: {_target_: os.system, command: x}}"], "dataset.args.hook._target_='os.system'"),
        (["+evil.key=1"], "'evil.key' is none of gan's options"),
        (["+model@hydra.callbacks=shift"], "'+model@hydra.callbacks=shift'"),
    ],
)
def test_a_resume_refuses_what_a_run_directory_adds_beyond_gans_options(
    finished_run: Path, workdir: Path, extra: list[str], names: str
) -> None:
    run, marker = _planted(finished_run, workdir, extra)
    _assert_refused(run_gan("train", f"resume={run}", "train.steps=4", cwd=workdir), run, marker, names)


def test_a_saved_config_dir_cannot_set_hydra_through_a_global_package(finished_run: Path, workdir: Path) -> None:
    """A group option read from the run's saved --config-dir may say `# @package _global_` and set hydra.* itself."""
    run, marker = _planted(finished_run, workdir, ["model=evil"])
    conf = run / "conf" / "model"
    conf.mkdir(parents=True)
    (conf / "evil.yaml").write_text(
        "# @package _global_\nmodel:\n  name: shift\nhydra:\n  callbacks:\n    pwn:\n      _target_: torch.load\n"
        f"      f: {run}/evil.pt\n      weights_only: false\n"
    )
    hydra_yaml = run / ".hydra" / "hydra.yaml"
    saved = yaml.safe_load(hydra_yaml.read_text())
    saved["hydra"]["searchpath"] = [f"file://{run / 'conf'}"]
    hydra_yaml.write_text(yaml.safe_dump(saved))
    _assert_refused(run_gan("train", f"resume={run}", "train.steps=4", cwd=workdir), run, marker, "hydra.callbacks")


def test_a_saved_search_path_is_only_read_as_folders(finished_run: Path, workdir: Path) -> None:
    run, marker = _planted(finished_run, workdir, [])
    hydra_yaml = run / ".hydra" / "hydra.yaml"
    saved = yaml.safe_load(hydra_yaml.read_text())
    saved["hydra"]["searchpath"] = ["pkg://antigravity"]
    hydra_yaml.write_text(yaml.safe_dump(saved))
    _assert_refused(run_gan("train", f"resume={run}", "train.steps=4", cwd=workdir), run, marker, "'pkg://antigravity'")


@pytest.mark.slow
def test_the_same_run_without_the_additions_still_resumes(finished_run: Path, workdir: Path) -> None:
    run, marker = _planted(finished_run, workdir, ["train.log_every=1"])
    run_gan("train", f"resume={run}", "train.steps=4", cwd=workdir, check=True)
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 4 and not marker.exists()
