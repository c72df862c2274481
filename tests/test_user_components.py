"""A user's own model, loss, dataset and optimizer, plugged in by `_target_` from a `--config-dir`: the README's
"Your own model" section run as written, the refusal of a checkpoint that names code nobody allowed, and the
contract's messages before step 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import GAUSS1D, docs_example, run_gan

FAST = [
    "train.steps=40",
    "train.log_every=10",
    "train.sample_every=20",
    "train.ckpt_every=20",
    "train.threads=1",
    "train.n_samples=16",
]


def with_fast(args: list[str], run: Path | None = None) -> list[str]:
    """The README's arguments with a short run's settings in place of its own, and RUN filled in."""
    keys = {a.split("=")[0] for a in FAST}
    return [a.replace("RUN", str(run)) for a in args if a.split("=")[0] not in keys]


@pytest.mark.slow
def test_the_readmes_own_model_trains_resumes_samples_and_scores_from_its_config_dir(
    workdir: Path, lenet_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, resume, sample, evaluate, helped = docs_example(workdir)
    assert train[:3] == ["train", "--config-dir", "my_conf"] and "model=tiny" in train

    run = workdir / "outputs" / "mine"
    first = run_gan(*with_fast(train), *FAST, f"hydra.run.dir={run}", cwd=workdir)
    assert first.returncode == 0, first.stderr
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished" and status["step"] == 40
    assert "D(G(z))" in status["final"] and "loss/G" in status["final"]
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["config"]["model"]["_target_"] == "my_gan.parts.build" and ckpt["config"]["model"]["args"] == {
        "z_dim": 32,
        "hidden": 256,
    }
    assert ckpt["config"]["optimizer"]["_target_"] == "torch.optim.AdamW" and ckpt["data_spec"]["shape"] == [1, 16, 16]
    assert "G_ema" in ckpt["models"]  # model.ema applies to a user's G too
    assert ckpt["optimizers"]["G"]["param_groups"][0]["weight_decay"] == 0.01  # optimizer.args reached AdamW

    # a resume imports the run's code only when the command vouches for it: its --config-dir named again ...
    refused_resume = run_gan("train", f"resume={run}", "train.steps=60", cwd=workdir)
    assert refused_resume.returncode == 2 and "give its --config-dir again" in refused_resume.stderr
    assert resume[:4] == ["train", "--config-dir", "my_conf", "resume=RUN"]
    again = run_gan(*with_fast(resume, run), "train.steps=60", "train.threads=1", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert json.loads((run / "status.json").read_text())["step"] == 60
    # ... or GAN_ALLOW_TARGETS: then the run's saved search path finds its YAML files without the flag
    monkeypatch.setenv("GAN_ALLOW_TARGETS", "my_gan,torch.optim")
    assert run_gan("train", f"resume={run}", "train.steps=70", "train.threads=1", cwd=workdir).returncode == 0
    assert json.loads((run / "status.json").read_text())["step"] == 70
    monkeypatch.delenv("GAN_ALLOW_TARGETS")

    refused = run_gan("sample", f"ckpt={run}", cwd=workdir)
    assert refused.returncode == 2 and "allow_targets=[my_gan" in refused.stderr and "Traceback" not in refused.stderr
    out = workdir / "grid.png"
    drawn = run_gan(
        *with_fast(sample, run), f"out={out}", "n=16", cwd=workdir
    )  # allow_targets=[my_gan]: the model only
    assert drawn.returncode == 0, drawn.stderr
    assert out.stat().st_size > 0

    scored = run_gan(*with_fast(evaluate, run), "metrics=[fid,classes]", "n=256", cwd=workdir)
    assert scored.returncode == 0, scored.stderr
    scores = json.loads((run / "metrics.json").read_text())["scores"]
    assert scores["fid256_lenet"] > 0 and scores["classes256_lenet"] >= 1

    shown = run_gan(*helped, cwd=workdir, check=True).stdout
    assert "model=tiny" in shown and "your my_gan.parts.build" in shown and "args: {z_dim: 32, hidden: 256}" in shown
    assert "attention" not in shown.split("loss=")[0]  # a _target_ model reads none of the built-in architectures' keys


@pytest.mark.slow
def test_a_checkpoint_naming_os_system_is_refused_before_anything_is_imported(workdir: Path) -> None:
    from gan_cli.checkpoint import save_checkpoint

    run = workdir / "outputs" / "plain"
    run_gan(
        "train",
        *GAUSS1D,
        "train.steps=2",
        "train.threads=1",
        f"hydra.run.dir={run}",
        cwd=workdir,
        check=True,
    )
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    marker = workdir / "PWNED"
    ckpt["config"]["model"].update({"name": "evil", "_target_": "os.system", "args": {"command": f"touch {marker}"}})
    ckpt.pop("format")
    crafted = workdir / "crafted.pt"
    save_checkpoint(ckpt, crafted)

    for command in (
        ["sample", f"ckpt={crafted}"],
        ["sample", f"ckpt={crafted}", "allow_targets=[my_gan]"],
        ["eval", f"ckpt={crafted}"],
    ):
        proc = run_gan(*command, cwd=workdir)
        assert proc.returncode == 2, proc.stderr
        assert (
            "model._target_='os.system'" in proc.stderr
            and "allow_targets=[os]" in proc.stderr
            and "Traceback" not in proc.stderr
        )
    assert not marker.exists()


def test_allowed_prefixes_match_whole_module_names_and_nested_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    from gan_cli.components import ALLOW_ENV, check_checkpoint_targets
    from gan_cli.errors import GanError

    mine = {"model": {"_target_": "my_gan.parts.build", "args": {}}}
    check_checkpoint_targets(mine, ["model"], ["my_gan"], "c.pt")
    check_checkpoint_targets({"model": {"_target_": None}}, ["model"], [], "c.pt")  # a built-in: nothing to allow
    check_checkpoint_targets(
        {"optimizer": {"_target_": "torch.optim.AdamW"}}, ["model", "dataset", "loss"], [], "c.pt"
    )  # never rebuilt
    for config, allow in (
        ({"model": {"_target_": "my_gan_evil.build"}}, ["my_gan"]),
        ({"model": {"_target_": "my_gan.parts.build", "args": {"act": {"_target_": "os.system"}}}}, ["my_gan"]),
        ({"dataset": {"_target_": "my_gan.data"}}, []),
    ):
        with pytest.raises(GanError, match="allow_targets"):
            check_checkpoint_targets(config, ["model", "dataset"], allow, "c.pt")
    monkeypatch.setenv(ALLOW_ENV, "other, my_gan")
    check_checkpoint_targets(mine, ["model"], [], "c.pt")


BROKEN = """
import torch
from torch import nn

class NoLatent(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.net = nn.Linear(2, d)
    def forward(self, z, y=None):
        return self.net(z)

class Critic(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.net = nn.Linear(d, 1)
    def forward(self, x, y=None):
        return self.net(x)  # N x 1: the contract wants one logit per sample, shape (N,)

class Latent(NoLatent):
    z_dim = 2

def no_z_dim(spec):
    return NoLatent(spec.shape[0]), Critic(spec.shape[0])

def wrong_logits(spec):
    return Latent(spec.shape[0]), Critic(spec.shape[0])

class HalfLoss:
    name = "half"
    def d_loss(self, real, fake):
        return fake.mean() - real.mean()
"""


@pytest.mark.parametrize(
    ("files", "args", "expected"),
    [
        ({"model/a.yaml": "name: a\n_target_: broken.no_z_dim\n"}, ["model=a"], "needs an integer z_dim >= 1"),
        (
            {"model/a.yaml": "name: a\n_target_: broken.wrong_logits\n"},
            ["model=a"],
            "The discriminator of model=a (broken.wrong_logits) for dataset=ring8 returned (2, 1) for 2 samples; the contract is one raw logit per sample, shape (2,)",
        ),
        (
            {"model/a.yaml": "name: a\n_target_: broken.wrong_logits\n"},
            ["model=a", "model.d_norm=spectral"],
            "model.d_norm=spectral sets an option of gan's built-in architectures",
        ),
        ({"model/a.yaml": "name: dcgan\n_target_: broken.wrong_logits\n"}, ["model=a"], "give it a name of its own"),
        ({"model/a.yaml": "name: a\n_target_: broken.absent\n"}, ["model=a"], "module 'broken' has no 'absent'"),
        (
            {"loss/h.yaml": "objective: half\n_target_: broken.HalfLoss\n"},
            ["model=mlp", "loss=h"],
            "it lacks estimate_tag, outputs_probability, g_loss(), d_output(), estimate()",
        ),
        (
            {"optimizer/o.yaml": "name: o\n_target_: builtins.dict\n"},
            ["model=mlp", "optimizer=o"],
            "optimizer._target_='builtins.dict' could not be built",
        ),
    ],
)
def test_a_component_that_breaks_the_contract_is_named_before_step_one(
    workdir: Path, files: dict[str, str], args: list[str], expected: str
) -> None:
    (workdir / "broken.py").write_text(BROKEN)
    for path, body in files.items():
        (workdir / "conf" / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / "conf" / path).write_text(body)
    proc = run_gan("train", "--config-dir", "conf", "dataset=ring8", *args, cwd=workdir)
    assert proc.returncode == 2 and proc.stderr.startswith("gan: error:") and "Traceback" not in proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert not (workdir / "outputs").exists(), "checked before a run directory exists"


@pytest.mark.slow
def test_a_resume_takes_model_args_as_data_and_prints_the_config_dir_to_come_back_with(workdir: Path) -> None:
    """model.args.* given on the command line is data, not code: resuming with the run's own --config-dir is
    accepted (it was refused as 'injected code'), and the command gan prints to continue names that --config-dir."""
    from gan_cli.rundir import resume_command

    train = docs_example(workdir)[0]
    run = workdir / "outputs" / "args"
    first = run_gan(*with_fast(train), *FAST, "model.args.hidden=64", f"hydra.run.dir={run}", cwd=workdir)
    assert first.returncode == 0, first.stderr
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["config"]["model"]["args"]["hidden"] == 64

    printed = resume_command(run)
    assert printed == f"gan train --config-dir {workdir / 'my_conf'} resume={run}"
    again = run_gan(*printed.split()[1:], "train.steps=50", "train.threads=1", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 50
    refused = run_gan("train", f"resume={run}", "train.steps=60", cwd=workdir)  # without the folder: still refused
    assert refused.returncode == 2 and "give its --config-dir again" in refused.stderr
