"""Every config option composes; presets set what their papers say; bad overrides fail early and clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import compose_train, run_gan
from gan_cli.config import config_dir

GROUPS = ("model", "loss", "optimizer", "dataset", "experiment")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(group: str, option: str) -> None:
    cfg = compose_train(f"{group}={option}")
    assert cfg.train.steps > 0


def test_every_yaml_option_has_a_comment() -> None:
    for group in GROUPS:
        for path in (config_dir() / group).glob("*.yaml"):
            assert path.read_text().lstrip().startswith("#"), f"{path} needs a leading comment saying what it is"


def test_paper_presets() -> None:
    wgan = compose_train("experiment=wgan")
    assert (wgan.loss.objective, wgan.loss.clip, wgan.loss.n_critic) == ("wasserstein", 0.01, 5)
    assert (wgan.optimizer.name, wgan.optimizer.lr) == ("rmsprop", 5e-5)
    gp = compose_train("experiment=wgan_gp")
    assert (gp.loss.penalty, gp.loss.penalty_weight, gp.loss.n_critic, gp.loss.clip) == ("gp", 10.0, 5, None)
    assert (gp.optimizer.name, gp.optimizer.lr, list(gp.optimizer.betas)) == ("adam", 1e-4, [0.0, 0.9])
    dc = compose_train("experiment=dcgan")
    assert (dc.model.name, dc.loss.objective, dc.optimizer.lr, list(dc.optimizer.betas)) == ("dcgan", "ns", 2e-4, [0.5, 0.999])


def test_defaults_are_the_documented_ones() -> None:
    cfg = compose_train()
    assert (cfg.model.name, cfg.loss.objective, cfg.optimizer.name, cfg.dataset.name, cfg.device) == ("dcgan", "ns", "adam", "mnist5k", "auto")
    assert compose_train("loss=wgan").loss.n_critic == 5 and compose_train("loss=ns").loss.n_critic == 1


@pytest.mark.parametrize(
    "override,expected",
    [
        ("model=dcgn", ["model/dcgn", "Available options in 'model'", "dcgan", "mlp"]),
        ("train.steps=abc", ["train.steps=abc", "could not be converted to Integer"]),
        ("train.stpes=5", ["train.stpes"]),
        ("loss=wgan_gpp", ["loss/wgan_gpp", "wgan_gp", "hinge"]),
    ],
)
def test_bad_overrides_give_one_paragraph_and_exit_2(workdir: Path, override: str, expected: list[str]) -> None:
    proc = run_gan("train", override, cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gan: error:")
    for text in expected:
        assert text in proc.stderr, (text, proc.stderr)
    assert not (workdir / "outputs").exists(), "a rejected command must not create a run directory"


def test_help_lists_commands_and_groups(workdir: Path) -> None:
    top = run_gan("--help", cwd=workdir, check=True)
    assert "train" in top.stdout and "sample" in top.stdout
    train = run_gan("train", "--help", cwd=workdir, check=True)
    for group in ("model:", "loss:", "optimizer:", "dataset:", "experiment:"):
        assert group in train.stdout
    assert "wgan_gp" in train.stdout and "mnist5k" in train.stdout
    for command in ("sample", "eval"):  # their options only: they take no config group, so none is offered
        text = run_gan(command, "--help", cwd=workdir, check=True).stdout
        assert "ckpt:" in text and "Configuration groups" not in text and "optimizer:" not in text
    bad = run_gan("trian", cwd=workdir)
    assert bad.returncode == 2 and "Unknown command 'trian'" in bad.stderr
