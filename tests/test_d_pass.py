"""train.d_pass=joint: D scores [real; fake] in one pass and R1 comes from that pass.

It is a speed path, so the test is that it computes what two passes compute: the same logits, extras, losses,
penalty and gradients (up to the order of float sums) for every per-sample D, and a clear refusal for a D whose
output for one sample depends on the rest of its batch.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import TINY, compose_train, only_run_dir, run_gan
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from gan_cli.data import DataSpec, LoadedData
from gan_cli.data.batching import TensorBatcher
from gan_cli.errors import GanError
from gan_cli.losses import build_loss, r1_from_grad, r1_penalty
from gan_cli.models import build_models
from gan_cli.models.layers import batch_coupled, discriminate, discriminate_pair
from gan_cli.optimizers import build_optimizers
from gan_cli.training.setup import check_d_pass
from gan_cli.training.speed import Precision
from gan_cli.training.step import train_step

CPU = torch.device("cpu")
TOY_SPEC = DataSpec("grid25", (2,), 25)
MNIST_SPEC = DataSpec("mnist", (1, 28, 28), 10)
# (what, spec, overrides): per-sample Ds across models, heads, conditioning, packing and penalties. Not here: dropout,
# whose masks a joint pass draws in another order, and spectral norm, whose power iteration runs once per pass (once
# per D step when joint, twice apart): the same distribution and estimator, other numbers.
CASES = [
    (
        "grid25 preset: MLP, R1, InfoGAN code",
        TOY_SPEC,
        ["experiment=grid25", "model.g_width=8", "model.d_width=8", "model.info_cat=5"],
    ),
    (
        "MLP, WGAN-GP (a penalty on points of its own), 2 critic steps",
        TOY_SPEC,
        ["model=mlp", "loss=wgan_gp", "loss.n_critic=2", "model.d_width=8", "model.g_width=8", "model.dropout=0"],
    ),
    (
        "MLP packed by 2, R1",
        TOY_SPEC,
        ["model=mlp", "model.pack=2", "loss.penalty=r1", "model.d_width=8", "model.g_width=8", "model.dropout=0"],
    ),
    (
        "DCGAN, layer norm, projection D, R1",
        MNIST_SPEC,
        [
            "model=dcgan",
            "model.d_norm=layer",
            "model.cond=projection",
            "loss.penalty=r1",
            "model.g_width=4",
            "model.d_width=4",
            "model.z_dim=8",
        ],
    ),
    (
        "DCGAN, no norm, ACGAN head, hinge",
        MNIST_SPEC,
        [
            "model=dcgan",
            "model.d_norm=none",
            "model.cond=acgan",
            "loss=hinge",
            "model.g_width=4",
            "model.d_width=4",
            "model.z_dim=8",
        ],
    ),
]


def _batcher(spec: DataSpec, batch: int = 8) -> TensorBatcher:
    x = torch.rand(64, *spec.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    y = torch.arange(64) % spec.num_classes
    return TensorBatcher(LoadedData(spec, x=x, y=y), batch, CPU, 0)


def _one_step(
    cfg, spec: DataSpec, G: nn.Module, D: nn.Module, joint: bool
) -> tuple[dict[str, torch.Tensor], nn.Module, nn.Module]:
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    opt_g, opt_d = build_optimizers(cfg.optimizer, G, D)
    torch.manual_seed(3)
    stats = train_step(G, D, build_loss(cfg.loss), opt_g, opt_d, _batcher(spec), CPU, joint=joint)
    return stats, G, D


@pytest.mark.parametrize("what, spec, overrides", CASES, ids=[c[0] for c in CASES])
def test_a_joint_pass_trains_as_two_passes_do(what: str, spec: DataSpec, overrides: list[str]) -> None:
    # plain SGD: every weight moves by lr * gradient, so equal weights after the step mean equal gradients (Adam
    # would blow float noise in a near-zero gradient up to a full step)
    cfg = compose_train(*overrides, "optimizer=sgd", "optimizer.lr=0.1")
    torch.manual_seed(0)
    G, D = build_models(cfg.model, spec)
    assert batch_coupled(D) == []
    apart, G_apart, D_apart = _one_step(cfg, spec, G, D, joint=False)
    joint, G_joint, D_joint = _one_step(cfg, spec, G, D, joint=True)
    assert apart.keys() == joint.keys()
    for key in apart:
        torch.testing.assert_close(joint[key], apart[key], rtol=1e-5, atol=1e-6, msg=lambda m: f"{what}: {key}: {m}")
    for name, net_joint, net_apart in (("G", G_joint, G_apart), ("D", D_joint, D_apart)):
        for (p, a), b in zip(net_apart.state_dict().items(), net_joint.state_dict().values()):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=lambda m: f"{what}: {name}.{p}: {m}")
    moved = max(
        (a - b).abs().max().item()
        for a, b in zip(D.state_dict().values(), D_joint.state_dict().values())
        if a.is_floating_point()
    )
    assert moved > 1e-4, "the step changed nothing, so the comparison above proves nothing"
    if "loss/penalty" in apart:
        assert apart["loss/penalty"] > 0


def test_the_pair_splits_logits_and_extras_and_r1_from_the_pass_is_r1() -> None:
    cfg = compose_train("experiment=grid25", "model.g_width=8", "model.d_width=8", "model.info_cat=5")
    torch.manual_seed(0)
    _, D = build_models(cfg.model, TOY_SPEC)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    (real_logits, real_ex), (fake_logits, fake_ex), both = discriminate_pair(D, real, fake, None, input_grad=True)
    for x, logits, ex in ((real, real_logits, real_ex), (fake, fake_logits, fake_ex)):
        alone, alone_ex = discriminate(D, x, None)
        torch.testing.assert_close(logits, alone)
        assert ex.keys() == alone_ex.keys() and all(torch.allclose(ex[k], alone_ex[k], atol=1e-6) for k in ex)
    from_pass = r1_from_grad(Precision(None, CPU).input_grad(real_logits, both)[: len(real)])
    torch.testing.assert_close(from_pass, r1_penalty(lambda x: D(x), real, fake))
    assert from_pass.requires_grad, "R1 must stay differentiable: D minimises it"


def test_r1_from_a_pass_under_fp16_loss_scaling_is_unscaled() -> None:
    # PyTorch's AMP gradient-penalty recipe: the gradient of the scaled output, divided by the scale again
    x = torch.randn(5, 2, requires_grad=True)
    w = torch.randn(2, 1)
    out = (x @ w).squeeze(1).tanh()
    fp16 = Precision(torch.float16, CPU)
    assert fp16.scalers["D"].is_enabled()
    torch.testing.assert_close(fp16.input_grad(out, x), Precision(None, CPU).input_grad(out, x))


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["model=dcgan"], "BatchNorm2d"),
        (["model=mlp", "model.minibatch=mbstd", "dataset=ring8"], "MinibatchStdDev"),
        (["model=mlp", "model.minibatch=mbdisc", "dataset=ring8"], "MinibatchDiscrimination"),
        (["model=progan"], "ProDiscriminator"),
    ],
)
def test_a_batch_coupled_d_is_refused(overrides: list[str], named: str) -> None:
    cfg = compose_train(*overrides, "model.g_width=4", "model.d_width=4", "model.z_dim=8")
    spec = TOY_SPEC if "dataset=ring8" in overrides else MNIST_SPEC
    _, D = build_models(cfg.model, spec)
    with pytest.raises(GanError, match=named) as err:
        check_d_pass("joint", D)
    assert "train.d_pass=separate" in str(err.value)
    check_d_pass("separate", D)  # the default pass takes any D


@pytest.mark.parametrize(
    "args, message",
    [
        (["model=dcgan"], "this D has BatchNorm2d"),
        (["model=lapgan"], "train.d_pass=joint: model=lapgan trains each pyramid level"),
    ],
)
def test_the_cli_refuses_joint_where_it_would_change_the_math(workdir: Path, args: list[str], message: str) -> None:
    proc = run_gan("train", *args, *TINY, "train.d_pass=joint", "train.steps=2", cwd=workdir)
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (workdir / "outputs").exists()


@pytest.mark.slow
def test_a_joint_run_trains_and_logs_its_penalty(workdir: Path) -> None:
    proc = run_gan(
        "train",
        "experiment=grid25",
        "train.d_pass=joint",
        "model.g_width=8",
        "model.d_width=8",
        "train.steps=6",
        "train.log_every=2",
        "train.sample_every=6",
        "train.ckpt_every=6",
        "eval.every=6",
        "eval.n=500",
        "eval.best=hq500",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = only_run_dir(workdir)
    events = EventAccumulator(str(run)).Reload()
    penalty = [e.value for e in events.Scalars("loss/penalty")]
    assert len(penalty) == 3 and all(v > 0 for v in penalty)
    assert events.Scalars("metrics/modes500")[-1].step == 6


def test_the_benchmark_races_both_passes_from_the_same_weights() -> None:
    """bench/d_pass.py on a tiny case: both settings train, from one build, and report steps/s."""
    from bench.d_pass import race
    from bench.loops import Case

    case = Case(
        "tiny",
        ["experiment=grid25", "model.g_width=8", "model.d_width=8", "model.info_cat=5"],
        data="grid25",
        batch_size=16,
    )
    row = race(case, rounds=2, chunk=1, warmup=1)
    assert row["case"] == "tiny" and row["separate"] > 0 and row["joint"] > 0
