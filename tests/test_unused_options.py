"""Options a run does not read (issue 29 items 4 and 24): set on the command line they are refused by name, with the
reason (a sweep, where a key may matter to some jobs only, warns instead); the presets set none; an empty `resume=`
is refused; and what a run logs (HParams, the config text) holds only the keys its options read."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import REPO, run_gan

from gan_cli.errors import GanError

TOY = ["model=mlp", "dataset=ring8", "train.steps=2", "train.threads=1"]


def one_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gan: error: "), proc.stderr
    return lines[0]


def refusal(*overrides: str) -> str:
    """The pre-check's refusal of a single run with `overrides` (the user typed them all)."""
    from gan_cli.arguments import precheck

    with pytest.raises(GanError) as refused:
        precheck("train", list(overrides), typed=list(overrides))
    return str(refused.value)


def warnings(*overrides: str) -> list[str]:
    from gan_cli.arguments import precheck

    return precheck("train", list(overrides), typed=list(overrides))


@pytest.mark.parametrize(
    ("overrides", "named", "why"),
    [
        (["+model.args.hidden=128"], "model.args", "model=mlp is built in"),
        (["loss.penalty_weight=10"], "loss.penalty_weight=10.0", "loss.penalty=none"),
        (["loss.penalty_every=4"], "loss.penalty_every=4", "loss.penalty=none"),
        (["loss.info_weight=2"], "loss.info_weight=2.0", "model.info_cat"),
        (["loss.aux_weight=2"], "loss.aux_weight=2.0", "model.cond=acgan"),
        (["loss.aux_on_fake=true"], "loss.aux_on_fake=True", "model.cond=acgan"),
        (["optimizer.momentum=0.9"], "optimizer.momentum=0.9", "optimizer=adam"),
        (["optimizer=sgd", "optimizer.betas=[0.9,0.99]"], "optimizer.betas=[0.9, 0.99]", "optimizer=sgd"),
        (["dataset.channels=1"], "dataset.channels=1", "dataset=ring8"),
        (["dataset.path=imgs"], "dataset.path=imgs", "dataset=ring8"),
        (["loss=wgan", "loss.label_smoothing=0.1"], "loss.label_smoothing", "loss.objective=wasserstein"),
    ],
)
def test_an_option_the_run_does_not_read_is_refused_by_name(overrides: list[str], named: str, why: str) -> None:
    text = refusal(*TOY, *overrides)
    assert named in text and why in text, text


def test_eval_options_without_scores_during_training_warn_and_run() -> None:
    said = warnings(*TOY, "eval.n=500", "eval.metrics=[modes]")
    assert len(said) == 2 and all("eval.every=0" in s for s in said), said
    assert "eval.n=500" in said[0] and "eval.metrics=['modes']" in said[1]
    assert warnings(*TOY, "eval.every=2", "eval.n=500") == []


def test_options_at_their_defaults_or_read_pass_silently() -> None:
    assert warnings(*TOY, "model.dropout=0.3", "loss.penalty_weight=0.0", "optimizer.betas=[0.5,0.999]") == []
    assert warnings(*TOY, "loss=wgan_gp", "loss.penalty_weight=5", "model.info_cat=4", "loss.info_weight=2") == []
    assert warnings("model=dcgan", "model.cond=acgan", "loss.aux_weight=2", "loss.aux_on_fake=true") == []


def test_a_sweep_warns_once_for_the_jobs_that_ignore_a_key(tmp_path: Path) -> None:
    from gan_cli.arguments import precheck

    args = ["--multirun", *TOY, "loss.penalty=none,gp", "loss.penalty_weight=5"]
    said = precheck("train", args, typed=[a for a in args if not a.startswith("-")])
    assert len(said) == 1 and "loss.penalty_weight=5.0" in said[0], said


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")))
def test_every_preset_passes_without_a_warning(experiment: str) -> None:
    """A preset sets keys deliberately (eval.* for scores that `eval.every=0` turns off, say): never a complaint."""
    assert warnings(f"experiment={experiment}", "eval.every=0") == []
    assert warnings(f"experiment={experiment}", "+debug=tiny") == []


def test_the_command_line_refuses_and_warns_once(tmp_path: Path) -> None:
    error = one_error(run_gan("train", *TOY, "optimizer.momentum=0.9", cwd=tmp_path))
    assert "optimizer.momentum=0.9 does nothing" in error and "optimizer=adam" in error, error
    assert not (tmp_path / "outputs").exists()
    proc = run_gan("train", *TOY, "eval.n=500", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("gan: warning: eval.n=500 does nothing") == 1, proc.stderr


@pytest.mark.parametrize("empty", ["resume=", "resume=''"])
def test_an_empty_resume_is_refused(tmp_path: Path, empty: str) -> None:
    error = one_error(run_gan("train", *TOY, empty, cwd=tmp_path))
    assert "resume" in error and "empty" in error and "resume=null" in error, error
    assert not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------------------------------------
# 4: what a run logs holds only the keys its options read
# ---------------------------------------------------------------------------------------------
PAIR = """
import math
from torch import nn

class G(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.z_dim, self.shape = 4, shape
        self.net = nn.Linear(4, math.prod(shape))

    def forward(self, z, y=None):
        return self.net(z).view(len(z), *self.shape)

class D(nn.Module):
    def __init__(self, shape, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), hidden), nn.BatchNorm1d(hidden), nn.Linear(hidden, 1))

    def forward(self, x, y=None):
        return self.net(x).squeeze(1)

def build(spec, hidden: int = 8):
    return G(spec.shape), D(spec.shape, hidden)
"""
MINE = ["model=mine", "dataset=ring8", "train.steps=2", "train.threads=1"]


def user_model(where: Path) -> list[str]:
    """my_pair.py and a --config-dir with model=mine (D with BatchNorm); the arguments that name the folder."""
    (where / "my_pair.py").write_text(PAIR)
    (where / "my_conf" / "model").mkdir(parents=True)
    (where / "my_conf" / "model" / "mine.yaml").write_text("name: mine\n_target_: my_pair.build\n")
    return ["--config-dir", str(where / "my_conf")]


def test_a_user_models_run_logs_none_of_the_built_in_architecture_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers import compose_train

    from gan_cli.config import to_plain
    from gan_cli.training import tracking

    user_model(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_train(*MINE, "+model.args.hidden=16", f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]")
    tracker = tracking.Tracker(tmp_path / "run", total_steps=2, start_step=0)
    texts, logged = {}, {}
    monkeypatch.setattr(tracker.writer, "add_text", lambda tag, text, step: texts.update({tag: text}))
    monkeypatch.setattr(tracking, "hparams", lambda values, final: logged.update(values) or (None, None, None))
    from gan_cli.training.loop import config_text, hparams

    tracker.text("config", config_text(to_plain(cfg)))
    tracker.latest = {"loss/G": 1.0}

    tracker.finish(hparams({"model": "mine"}, to_plain(cfg)), 2, "finished")
    model_keys = {k for k in logged if k.startswith("model.")}
    assert model_keys == {
        "model.name",
        "model._target_",
        "model.args.hidden",
        "model.ema",
        "model.ema_warmup",
        "model.pack",
    }
    assert "optimizer.momentum" not in logged and "dataset.path" not in logged and "optimizer.betas" in logged
    assert "d_norm" not in texts["config"] and "g_width" not in texts["config"] and "hidden: 16" in texts["config"]
    assert "train:" in texts["config"] and "steps: 2" in texts["config"]


def test_a_user_model_is_not_told_to_set_model_d_norm(tmp_path: Path) -> None:
    proc = run_gan("train", *user_model(tmp_path), *MINE, "loss=wgan_gp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "BatchNorm in D" in proc.stderr and "model.d_norm" not in proc.stderr, proc.stderr
