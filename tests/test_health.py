"""The health detectors (train.health): each rule fires on the values it is about, once, with advice the run can
take; runs made to fail on purpose print the right warning into the console, train.log, status.json and `gan report`,
and a healthy run prints none."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import TINY, run_gan
from omegaconf import OmegaConf

from gan_cli.config import group_defaults
from gan_cli.data.loaded import LoadedData
from gan_cli.data.spec import DataSpec
from gan_cli.data.toys import mode_centers
from gan_cli.report import build_report
from gan_cli.report.runs import read_curves
from gan_cli.training import health as H
from gan_cli.training.health import DIVERSITY_FLOOR, Health

SPEC = DataSpec("mnist5k", (1, 8, 8), 10)


def _cfg(**over):
    base = {
        "model": OmegaConf.merge(group_defaults("model"), {"name": "dcgan"}),
        "loss": OmegaConf.merge(group_defaults("loss"), {"objective": "ns"}),
        "optimizer": OmegaConf.merge(group_defaults("optimizer"), {"name": "adam"}),
        "dataset": OmegaConf.merge(group_defaults("dataset"), {"name": "mnist5k"}),
        "train": {"steps": 1000, "log_every": 10, "n_samples": 16, "augment": []},
        "seed": 0,
    }
    return OmegaConf.merge(base, over)


def _health(tmp_path: Path, probability: bool = True, data=None, **over) -> Health:
    cfg = _cfg(**over)
    reads = OmegaConf.to_container(cfg)
    data = data or LoadedData(SPEC, x=torch.rand(64, 1, 8, 8) * 2 - 1)
    return Health(cfg, reads, data, probability, tmp_path)


def _names(h: Health) -> list[str]:
    return [w["name"] for w in h.warnings]


def test_d_wins_needs_a_confident_d_and_a_vanished_g_gradient_for_three_logs(tmp_path: Path, caplog) -> None:
    h = _health(tmp_path, loss={"objective": "minimax"})
    h.on_log(10, {"D(x)": 0.6, "D(G(z))": 0.4, "grad_norm/G": 2.0})
    for step in (20, 30):
        h.on_log(step, {"D(x)": 0.99, "D(G(z))": 0.01, "grad_norm/G": 0.01})
    assert not h.warnings  # two logs: not yet
    h.on_log(40, {"D(x)": 0.99, "D(G(z))": 0.01, "grad_norm/G": 0.01})
    (w,) = h.warnings
    assert w["name"] == "d_wins" and w["since"] == 20
    assert w["advice"] == ["optimizer.lr_d=5e-05", "loss=ns"]  # a quarter of lr; minimax -> ns
    assert "health: d_wins since step 20" in caplog.text
    for step in (50, 60, 70):  # once per run, not every log
        h.on_log(step, {"D(x)": 0.99, "D(G(z))": 0.01, "grad_norm/G": 0.01})
    assert _names(h) == ["d_wins"] and caplog.text.count("health: d_wins") == 1
    confident_only = _health(tmp_path)  # D sure of itself while G still gets a gradient (ns): no warning
    for step in range(10, 100, 10):
        confident_only.on_log(step, {"D(x)": 0.99, "D(G(z))": 0.01, "grad_norm/G": 2.0})
    assert not confident_only.warnings


def test_the_advice_names_only_keys_the_run_reads_and_values_it_does_not_have(tmp_path: Path) -> None:
    h = _health(tmp_path, loss={"penalty": "r1", "penalty_weight": 5.0}, optimizer={"lr_d": 4e-4})
    assert h.advice.r1() is None and h.advice.ns() is None  # has R1 already; ns already
    assert h.advice.lr("lr_d", 0.25) == "optimizer.lr_d=0.0001"  # from lr_d, not lr
    assert h.advice.set("model.minibatch", "mbstd") == "model.minibatch=mbstd"
    user = _health(tmp_path)
    user.advice.reads = {"model": {"name": "mine", "_target_": "my.build", "args": {}, "ema": 0.0, "pack": 1}}
    assert user.advice.set("model.minibatch", "mbstd") is None and user.advice.set("model.pack", 2) == "model.pack=2"
    assert user.advice.r1() is None  # the loss group is not among what this run reads


def test_a_gradient_or_penalty_spike_is_judged_against_its_own_median(tmp_path: Path) -> None:
    h = _health(tmp_path, loss={"penalty": "gp"})
    assert h.on_log(10, {"grad_norm/D": 1e-5}) == {}  # the warm-up: a G waking up is no explosion
    h.on_log(20, {"grad_norm/D": 100.0})
    assert not h.warnings
    for step in range(300, 360, 10):
        out = h.on_log(step, {"grad_norm/D": 1.0 + step / 1000, "loss/penalty": 0.1})
    assert out["health/grad_d_spike"] < 2 and not h.warnings
    h.on_log(370, {"grad_norm/D": 100.0, "loss/penalty": 0.1})
    assert _names(h) == ["gradient_explodes"] and h.warnings[0]["since"] == 370
    h.on_log(380, {"grad_norm/D": 1.0, "loss/penalty": 50.0})
    assert _names(h) == ["gradient_explodes", "penalty_explodes"]


def test_oscillation_is_a_large_swing_that_keeps_changing_direction(tmp_path: Path) -> None:
    h = _health(tmp_path)
    for i, step in enumerate(range(200, 400, 10)):  # judged after the warm-up (a quarter of 1000 steps)
        margin = 0.9 if i % 2 else 0.1
        h.on_log(step, {"D(x)": 0.5 + margin / 2, "D(G(z))": 0.5 - margin / 2, "grad_norm/G": 1.0})
    assert _names(h) == ["oscillation"]
    steady = _health(tmp_path)
    for i, step in enumerate(range(200, 400, 10)):
        steady.on_log(step, {"D(x)": 0.55 + 0.01 * (i % 2), "D(G(z))": 0.45, "grad_norm/G": 1.0})
    assert not steady.warnings


def test_a_critics_gap_that_keeps_growing_fires_for_wasserstein_type_losses(tmp_path: Path) -> None:
    h = _health(tmp_path, probability=False, loss={"objective": "wasserstein"})
    for step in range(10, 260, 10):  # warm-up (a quarter of the run): not judged
        h.on_log(step, {"D(x)": 5.0, "D(G(z))": 0.0})
    for step in range(260, 400, 10):  # settles near 1
        h.on_log(step, {"D(x)": 1.0, "D(G(z))": 0.0})
    assert not h.warnings
    for i, step in enumerate(range(400, 470, 10)):
        h.on_log(step, {"D(x)": 1.0 + i, "D(G(z))": 0.0})
    assert _names(h) == ["d_wins"] and "critic" in h.warnings[0]["seen"]


def test_mode_collapse_is_a_fixed_noise_batch_much_less_spread_than_real_data(tmp_path: Path) -> None:
    h = _health(tmp_path)
    varied = torch.rand(16, 1, 8, 8) * 2 - 1
    same = varied[:1].expand(16, 1, 8, 8) + 0.01 * torch.randn(16, 1, 8, 8)
    assert h.on_samples(50, same, None)["health/diversity"] < DIVERSITY_FLOOR and not h.warnings  # warm-up
    assert h.on_samples(500, varied, None)["health/diversity"] > 0.8 and not h.warnings
    h.on_samples(600, 0.45 * varied, None)  # 45% of its best: a G still finding its way
    assert not h.warnings
    h.on_samples(700, 0.3 * varied, None)  # under a third of its best
    assert _names(h) == ["mode_collapse"] and h.warnings[0]["since"] == 700
    nonoise = _health(tmp_path)
    nonoise.on_samples(300, same, None)  # never better than one sample drawn 16 times
    assert _names(nonoise) == ["mode_collapse"]
    grown = h.on_samples(700, torch.rand(16, 1, 4, 4) * 2 - 1, None)  # progan draws smaller images early on
    assert grown["health/diversity"] > 0.5


def test_a_toy_run_that_covers_few_modes_is_told_so_with_the_preset(tmp_path: Path) -> None:
    centers = mode_centers("grid25")
    data = LoadedData(DataSpec("grid25", (2,), None), x=centers.repeat(4, 1) + 0.05 * torch.randn(100, 2))
    over = {"dataset": {"name": "grid25", "std": 0.05}, "model": {"name": "mlp", "info_cat": 0}}
    h = _health(tmp_path, data=data, **over, train={"steps": 2000})
    five = lambda n: centers[torch.arange(n) % 5]  # noqa: E731
    everywhere = lambda n: centers[torch.arange(n) % 25]  # noqa: E731
    for step in range(100, 1600, 100):  # a preset may land its modes late: not judged before 75% of the run
        h.on_samples(step, five(16), five)
    assert h.on_samples(1600, everywhere(16), everywhere)["health/modes"] == 25 and not h.warnings
    assert h.on_samples(1700, five(16), five)["health/modes"] == 5 and not h.warnings  # one tick may blur
    h.on_samples(1800, everywhere(16), everywhere)
    h.on_samples(1900, five(16), five)
    assert not h.warnings
    h.on_samples(2000, five(16), five)
    (w,) = h.warnings
    assert w["name"] == "modes_lost" and w["since"] == 1900 and "5 of the 25" in w["seen"]
    assert "25 at best" in w["seen"] and w["advice"][0] == "experiment=grid25"


def test_a_resumed_run_keeps_the_earlier_warnings_and_does_not_repeat_them(tmp_path: Path) -> None:
    earlier = [{"name": "d_wins", "since": 20, "seen": "x", "advice": []}]
    h = Health(_cfg(), {}, LoadedData(SPEC, x=torch.rand(8, 1, 8, 8)), True, tmp_path, earlier)
    for step in range(10, 80, 10):
        h.on_log(step, {"D(x)": 0.99, "D(G(z))": 0.01, "grad_norm/G": 1e-6 if step > 10 else 1.0})
    assert h.warnings == earlier


def test_real_reference_draws_nothing_from_trainings_random_stream() -> None:
    data = LoadedData(SPEC, x=torch.rand(100, 1, 8, 8))
    before = torch.get_rng_state()
    H.real_reference(data, 16, 0)
    assert torch.equal(before, torch.get_rng_state())
    assert math.isclose(H.mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])), 5.0)


# ---------------------------------------------------------------------------------------------
# runs made to fail on purpose, and healthy ones, end to end
# ---------------------------------------------------------------------------------------------
NO_NOISE = '''
import math
from torch import nn


class NoNoise(nn.Module):
    """An MLP generator whose noise input is multiplied by 0: every z gives the same sample."""

    def __init__(self, shape, z_dim, hidden):
        super().__init__()
        self.z_dim, self.shape = z_dim, shape
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, math.prod(shape)), nn.Tanh())

    def forward(self, z, y=None):
        return self.net(0 * z).view(len(z), *self.shape)


class Critic(nn.Module):
    def __init__(self, shape, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x, y=None):
        return self.net(x).squeeze(1)


def build(spec, z_dim=16, hidden=32):
    return NoNoise(spec.shape, z_dim, hidden), Critic(spec.shape, hidden)
'''


def _train(cwd: Path, name: str, *args: str) -> tuple[dict, str]:
    run = cwd / name
    proc = run_gan("train", *args, "train.threads=1", f"hydra.run.dir={run}", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    status = json.loads((run / "status.json").read_text())
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "health:" in line]
    log_lines = [line for line in (run / "train.log").read_text().splitlines() if "health:" in line]
    assert len(lines) == len(log_lines) == len(status["warnings"]), (lines, log_lines)  # one line each, both places
    return status, "\n".join(lines)


SHORT = [
    "train.batch_size=16",
    "dataset.limit=256",
    "train.num_workers=0",
    "train.log_every=10",
    "train.ckpt_every=1000",
]
TINY_WIDTHS = [a for a in TINY if a.startswith("model.")]


@pytest.mark.slow
def test_runs_made_to_fail_raise_the_right_warning(tmp_path: Path) -> None:
    """D's learning rate far too high under minimax; a G with no noise input; model=mlp on grid25 without its preset;
    a learning rate 25 times the default with Adam's momentum."""
    (tmp_path / "nonoise.py").write_text(NO_NOISE)
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "nonoise.yaml").write_text("name: nonoise\n_target_: nonoise.build\n")

    status, printed = _train(tmp_path, "minimax", *SHORT, *TINY_WIDTHS, "train.steps=80", "train.sample_every=20",
                             "loss=minimax", "optimizer.lr_d=5e-3")  # fmt: skip
    assert [(w["name"], w["since"]) for w in status["warnings"]] == [("d_wins", 20)], printed
    assert "try optimizer.lr_d=0.0013 or loss=ns" in printed
    resumed = run_gan("train", f"resume={tmp_path / 'minimax'}", "train.steps=100", "train.threads=1", cwd=tmp_path)
    assert resumed.returncode == 0 and "health:" not in resumed.stdout + resumed.stderr  # said once, not again
    assert json.loads((tmp_path / "minimax" / "status.json").read_text())["warnings"] == status["warnings"]

    status, printed = _train(tmp_path, "nonoise", "--config-dir", "conf", "model=nonoise", *SHORT, "train.steps=40",
                             "train.sample_every=20")  # fmt: skip
    assert [w["name"] for w in status["warnings"]] == ["mode_collapse"], printed
    assert "0% as spread out as real data" in printed and "model.minibatch" not in printed  # not a key it reads

    status, printed = _train(tmp_path, "grid", "model=mlp", "dataset=grid25", "train.num_workers=0", "train.steps=240",
                             "train.log_every=20", "train.sample_every=20", "train.ckpt_every=1000")  # fmt: skip
    assert [(w["name"], w["since"]) for w in status["warnings"]] == [("modes_lost", 200)], printed
    assert "of the 25 modes at 2 sample ticks in a row" in printed and "try experiment=grid25" in printed

    status, printed = _train(tmp_path, "circling", *SHORT, *TINY_WIDTHS, "train.steps=100", "train.sample_every=50",
                             "optimizer.lr=5e-3", "optimizer.betas=[0.9,0.999]")  # fmt: skip
    assert [w["name"] for w in status["warnings"]] == ["oscillation"], printed
    assert "try loss.penalty=r1 loss.penalty_weight=5 model.d_norm=spectral or optimizer.lr=0.0025" in printed

    proc = run_gan("report", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "d_wins@20" in proc.stdout and "mode_collapse@" in proc.stdout and "modes_lost@" in proc.stdout
    assert "health: d_wins since step 20" in proc.stdout  # the warning's line below the table


@pytest.mark.slow
def test_a_short_default_run_raises_none_and_health_off_logs_none(tmp_path: Path) -> None:
    """(The full default run and the toy presets, minutes each, were checked by hand: docs/runs.md "Health".)"""
    status, printed = _train(tmp_path, "default", *SHORT, *TINY_WIDTHS, "train.steps=120", "train.sample_every=20")
    assert status["warnings"] == [], printed
    off = tmp_path / "off"
    proc = run_gan("train", *SHORT, *TINY_WIDTHS, "train.steps=60", "train.sample_every=20", "train.health=off",
                   "loss=minimax", "optimizer.lr_d=5e-3", "train.threads=1", f"hydra.run.dir={off}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0 and "health" not in proc.stdout + proc.stderr
    assert json.loads((off / "status.json").read_text())["warnings"] is None  # not watched: not "ok"
    assert not read_curves(off, prefix="health/")
    rows = {r.label: r.health for r in build_report([str(tmp_path)]).runs}
    assert rows == {"default": "ok", "off": "-"}
    proc = run_gan("report", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0 and "health" in proc.stdout and " ok " in proc.stdout, proc.stdout
