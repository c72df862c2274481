"""The sample-quality options: PacGAN packing, the EMA generator, learning-rate schedules, DiffAugment in the step.

Each option is checked against its definition (the packing layout, the EMA recursion, the lr formula),
inside one training step, and through the real `gan train` command, where a resumed run must match an
uninterrupted one bit for bit.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from helpers import (
    TINY,
    TOY,
    TRAINING_STATE,
    assert_same,
    assert_same_training_state,
    compose_train,
    load_last,
    only_run_dir,
    resume_from_midway,
    run_gan,
)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from gan_cli.data import DataSpec, LoadedData
from gan_cli.data.batching import TensorBatcher
from gan_cli.errors import GanError
from gan_cli.losses import build_loss
from gan_cli.models import EMA, PackedDiscriminator, build_models, ema_decay, num_classes, sample_latent
from gan_cli.optimizers import build_optimizers
from gan_cli.schedules import lr_factor
from gan_cli.training.augment import POLICIES, DiffAugment
from gan_cli.training.step import train_step

LOSSES = ["minimax", "ns", "wgan", "wgan_gp", "lsgan", "hinge"]
TOY_SPEC = DataSpec("ring8", (2,), 8)
MNIST_SPEC = DataSpec("mnist", (1, 28, 28), 10)
SMALL = ["model.g_width=4", "model.d_width=4", "model.z_dim=8", "model.cond=none"]  # unconditional unless a test asks
CPU = torch.device("cpu")


def models(model: str, spec: DataSpec, *overrides: str) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return build_models(compose_train(f"model={model}", *SMALL, *overrides).model, spec)


def batcher(spec: DataSpec, batch: int = 4) -> TensorBatcher:
    x = torch.rand(32, *spec.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return TensorBatcher(LoadedData(spec, x=x), batch, CPU, 0)


# ---------------------------------------------------------------------------------------------
# 1. packing (PacGAN)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model,spec", [("mlp", TOY_SPEC), ("dcgan", MNIST_SPEC)], ids=["mlp-toy", "dcgan-mnist"])
def test_pack_1_is_exactly_the_unpacked_model(model: str, spec: DataSpec) -> None:
    """model.pack=1 builds the default D (same keys and shapes), and wrapping a D with m=1 changes no output."""
    _, D_default = models(model, spec)
    _, D_pack1 = models(model, spec, "model.pack=1")
    assert not isinstance(D_pack1, PackedDiscriminator)
    shapes = lambda D: {k: tuple(v.shape) for k, v in D.state_dict().items()}  # noqa: E731
    assert shapes(D_pack1) == shapes(D_default)
    D_default.eval()  # no dropout noise: the same input must give the same logits
    x = torch.rand(6, *spec.shape) * 2 - 1
    assert torch.equal(PackedDiscriminator(D_default, 1)(x), D_default(x))


def test_pack_2_on_vectors_puts_samples_2i_and_2i_plus_1_together() -> None:
    """On (B, 2) points D returns B/2 logits, the inner D's logits of rows [x_2i, x_2i+1] (4 features)."""
    _, D = models("mlp", TOY_SPEC, "model.pack=2")
    assert isinstance(D, PackedDiscriminator) and D.m == 2
    assert D.inner.body[1].in_features == 4  # Flatten, then the first Linear: two 2-D points per input
    D.eval()
    x = torch.randn(8, 2)
    out = D(x)
    assert out.shape == (4,)
    assert torch.equal(out, D.inner(x.reshape(4, 4)))
    assert torch.equal(out, D.inner(torch.cat([x[0::2], x[1::2]], dim=1)))


def test_pack_2_on_images_stacks_the_pack_along_channels() -> None:
    """On 1x28x28 images the inner DCGAN D reads 2 channels: sample 2i's, then sample 2i+1's."""
    _, D = models("dcgan", MNIST_SPEC, "model.pack=2")
    first_conv = next(m for m in D.inner.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 2
    D.eval()
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    out = D(x)
    assert out.shape == (3,)
    assert torch.equal(out, D.inner(torch.cat([x[0::2], x[1::2]], dim=1)))


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("model,spec", [("mlp", TOY_SPEC), ("dcgan", MNIST_SPEC)], ids=["mlp-toy", "dcgan-mnist"])
def test_pack_2_trains_with_every_loss(model: str, spec: DataSpec, loss_name: str) -> None:
    """One training step of a packed D with each objective: finite statistics, and G moves."""
    cfg = compose_train(f"model={model}", f"loss={loss_name}", *SMALL, "model.pack=2")
    torch.manual_seed(0)
    G, D = build_models(cfg.model, spec)
    loss = build_loss(cfg.loss)
    opt_g, opt_d = build_optimizers(cfg.optimizer, G, D)
    g_before = [p.detach().clone() for p in G.parameters()]
    stats = train_step(G, D, loss, opt_g, opt_d, batcher(spec, 4), CPU)
    assert stats["loss/D"].shape == () and D(torch.rand(4, *spec.shape)).shape == (2,)
    assert all(torch.isfinite(v).all() for v in stats.values()), stats
    assert any(not torch.equal(a, b) for a, b in zip(g_before, G.parameters())), "G did not move"


def test_pack_rejects_batches_it_cannot_split_conditioning_and_zero() -> None:
    """A batch that is not a multiple of m names train.batch_size; per-sample labels and m < 1 are refused."""
    _, D = models("mlp", TOY_SPEC, "model.pack=3")
    with pytest.raises(GanError, match=r"train\.batch_size"):
        D(torch.randn(4, 2))
    with pytest.raises(GanError, match=r"model\.pack=2.*model\.cond"):
        models("mlp", MNIST_SPEC, "model.pack=2", "model.cond=concat")
    with pytest.raises(GanError, match=r"model\.pack=0"):
        models("mlp", TOY_SPEC, "model.pack=0")


def test_pack_on_1d_data_is_refused_before_training() -> None:
    """gauss1d's plots and D* score read D(x) of single points, which a packed D does not have."""
    with pytest.raises(GanError, match=r"model\.pack=2.*model\.pack=1"):
        models("mlp", DataSpec("gauss1d", (1,), 0), "model.pack=2")


def test_cli_batch_size_not_a_multiple_of_pack_is_one_clear_error(tmp_path: Path) -> None:
    """Through `gan train`: exit 2, the message names train.batch_size, no traceback."""
    proc = run_gan("train", *TOY, "model.pack=3", "train.steps=2", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "train.batch_size" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# 2. EMA
# ---------------------------------------------------------------------------------------------
class Scalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


def test_ema_decay_schedule() -> None:
    """ema_decay is min(decay, (1 + t) / (10 + t)) with warm-up, the constant decay without."""
    assert ema_decay(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.999, 10) == pytest.approx(11 / 20)
    assert ema_decay(0.999, 10_000) == 0.999  # (1 + t) / (10 + t) > 0.999 from t = 8992 on
    assert ema_decay(0.5, 1) == pytest.approx(2 / 11) and ema_decay(0.5, 20) == 0.5
    assert ema_decay(0.999, 1, warmup=False) == 0.999


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_follows_the_recursion(warmup: bool) -> None:
    """After each update, ema = d_t * ema + (1 - d_t) * live, with d_t = min(decay, (1+t)/(10+t)) (or decay)."""
    live = Scalar()
    with torch.no_grad():
        live.w.fill_(3.0)
    ema = EMA(live, 0.9, warmup=warmup)
    expected = 3.0  # the EMA starts as a copy of the live weights
    for t, value in enumerate([1.0, -2.0, 5.0, 0.5, 4.0, -1.0, 2.0, 7.0], start=1):
        with torch.no_grad():
            live.w.fill_(value)
        ema.update(live)
        d = min(0.9, (1 + t) / (10 + t)) if warmup else 0.9
        expected = d * expected + (1 - d) * value
        assert float(ema.module.w) == pytest.approx(expected, rel=1e-6, abs=1e-6), t
    assert ema.updates == 8 and ema.state_dict() == {"updates": 8}


def test_ema_rejects_a_decay_outside_0_1() -> None:
    for decay in (0.0, 1.0, -0.5):
        with pytest.raises(GanError, match="model.ema"):
            EMA(Scalar(), decay)


def _bn_gap(module: nn.Module, z: torch.Tensor) -> float:
    """How far the eval-mode output (running statistics) is from the train-mode output (batch statistics of z)."""
    reference = copy.deepcopy(module).train()
    with torch.no_grad():
        batch_stats = reference(z)[:64]
        module.eval()
        running = module(z[:64])
    return float((running - batch_stats).abs().max())


def test_ema_recomputes_batchnorm_statistics_of_the_averaged_weights() -> None:
    """After recompute, the EMA's BN running stats are those of its own weights (eval ~ train on a large batch),
    the global RNG is untouched, and a second call without an update is skipped."""
    G, _ = models("dcgan", MNIST_SPEC)
    ema = EMA(G, 0.9)
    gen = torch.Generator().manual_seed(5)
    for _ in range(5):  # the live G drifts far away; the EMA follows it
        with torch.no_grad():
            for p in G.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
        ema.update(G)
    z = sample_latent(G, 2048, "cpu", torch.Generator().manual_seed(7))
    before = _bn_gap(ema.module, z)

    draws: list[int] = []

    def draw_z(n: int, g: torch.Generator) -> torch.Tensor:
        draws.append(n)
        return sample_latent(G, n, "cpu", g)

    rng = torch.get_rng_state()
    ema.recompute_norm_stats(draw_z)
    assert torch.equal(torch.get_rng_state(), rng), "recompute must leave training's random stream alone"
    assert draws and not ema.module.training
    after = _bn_gap(ema.module, z)
    assert after < 0.05 * before, (before, after)

    state = copy.deepcopy(ema.module.state_dict())
    draws.clear()
    ema.recompute_norm_stats(draw_z)  # fresh: nothing to do
    assert not draws
    assert_same(state, ema.module.state_dict(), "G_ema")
    ema.update(G)
    ema.recompute_norm_stats(draw_z)  # stale again after an update
    assert draws


@pytest.mark.parametrize("decay", [0.01, 0.9])
def test_ema_of_a_spectrally_normalised_g_tracks_its_power_iteration(decay: float) -> None:
    """model.g_spectral with an EMA: every layer of the EMA generator has spectral norm 1 for its own averaged
    weights (not the initial weights' sigma); with a decay near 0 the EMA is the live G and samples alike."""
    G, _ = models("mlp", TOY_SPEC, "model.g_spectral=true")
    ema = EMA(G, decay)
    opt = torch.optim.Adam(G.parameters(), lr=0.05)
    for _ in range(30):  # grow the weights: their singular values move far from the initial ones
        opt.zero_grad()
        (-G(torch.randn(64, 8)).square().mean()).backward()
        opt.step()
        ema.update(G)
    with torch.no_grad():
        normalised = [m.weight for m in ema.module.modules() if hasattr(m, "parametrizations")]
        assert len(normalised) == 4
        for w in normalised:
            assert float(torch.linalg.matrix_norm(w, ord=2)) == pytest.approx(1.0, abs=1e-2)
        if decay < 0.1:
            G.eval()
            z = torch.randn(64, 8)
            live, averaged = G(z), ema.module(z)
            assert float((live - averaged).abs().max()) < 0.05 * float(live.abs().max())


# ---------------------------------------------------------------------------------------------
# 3. learning-rate schedules
# ---------------------------------------------------------------------------------------------
def test_lr_factor_shapes() -> None:
    """constant 1; linear 1 -> 1/2 -> ~0; cosine 1 -> 1/2; warm-up (s+1)/w, then the schedule from its end."""
    total = 100
    assert all(lr_factor("constant", s, total) == 1.0 for s in range(total))
    assert lr_factor("linear", 0, total) == 1.0
    assert lr_factor("linear", 50, total) == pytest.approx(0.5)
    assert lr_factor("linear", 99, total) == pytest.approx(0.01)
    assert lr_factor("cosine", 0, total) == 1.0
    assert lr_factor("cosine", 50, total) == pytest.approx(0.5)
    assert lr_factor("cosine", 99, total) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    warmup = 10
    for schedule in ("constant", "linear", "cosine"):
        for s in range(warmup):
            assert lr_factor(schedule, s, total, warmup) == pytest.approx((s + 1) / warmup)
        assert lr_factor(schedule, warmup, total, warmup) == 1.0  # the schedule starts where warm-up ends
    assert lr_factor("linear", warmup + 45, total, warmup) == pytest.approx(0.5)  # half of the 90 steps after warm-up
    assert lr_factor("cosine", warmup + 45, total, warmup) == pytest.approx(0.5)


@pytest.mark.slow
def test_cli_logs_the_lr_each_update_used(tmp_path: Path) -> None:
    """lr/G and lr/D at step s are base_lr * lr_factor(s - 1): the rate of update s, warm-up included."""
    run_gan(
        "train",
        *TOY,
        "train.steps=8",
        "train.log_every=1",
        "optimizer.schedule=linear",
        "optimizer.warmup=2",
        cwd=tmp_path,
        check=True,
    )
    acc = EventAccumulator(str(only_run_dir(tmp_path)), size_guidance={"scalars": 0})
    acc.Reload()
    base = compose_train(*TOY).optimizer.lr
    for tag in ("lr/G", "lr/D"):
        logged = {e.step: e.value for e in acc.Scalars(tag)}
        assert sorted(logged) == list(range(1, 9)), tag
        for step, value in logged.items():
            assert value == pytest.approx(base * lr_factor("linear", step - 1, 8, 2), rel=1e-6), (tag, step)
    assert logged[1] == pytest.approx(base / 2) and logged[3] == pytest.approx(base)  # warm-up, then the peak


@pytest.mark.parametrize(
    "override,expected", [("optimizer.schedule=step", "'step'"), ("optimizer.warmup=-1", "optimizer.warmup=-1")]
)
def test_cli_bad_schedule_options_exit_2(tmp_path: Path, override: str, expected: str) -> None:
    """An unknown schedule or a negative warm-up: exit 2, the message names the value, no traceback."""
    proc = run_gan("train", *TOY, override, "train.steps=2", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# 4. resume is bit-exact with the new options
# ---------------------------------------------------------------------------------------------
def assert_resumed_with_ema(a: dict, b: dict) -> None:
    """The same training state as the straight run, every part of it saved, with an EMA generator and both schedulers."""
    assert set(TRAINING_STATE) <= a.keys()
    assert_same_training_state(a, b)
    assert set(a["models"]) == {"G", "D", "G_ema"} and set(a["schedulers"]) == {"G", "D"}


@pytest.mark.slow
def test_resume_toy_with_cosine_warmup_and_ema_is_exact(tmp_path: Path) -> None:
    """Stopped at step 4 of 8 and resumed: G, D, G_ema, optimisers, schedulers and EMA count equal a straight run,
    with a lazy penalty whose steps are counted from the run's start, not from the resume."""
    a, b = resume_from_midway(
        tmp_path,
        [
            *TOY,
            "train.ckpt_every=4",
            "optimizer.schedule=cosine",
            "optimizer.warmup=2",
            "model.ema=0.9",
            "loss.penalty=r1",
            "loss.penalty_weight=1",
            "loss.penalty_every=3",  # lazy R1 due at steps 1, 4, 7: 7 is after the resume
        ],
    )
    assert_resumed_with_ema(a, b)
    assert a["schedulers"]["G"]["last_epoch"] == 8 and a["ema_state"] == {"updates": 8}


@pytest.mark.slow
def test_resume_images_with_augment_ema_and_linear_schedule_is_exact(tmp_path: Path) -> None:
    """The same on a BatchNorm DCGAN with DiffAugment: the recomputed EMA statistics are saved and restored too."""
    a, b = resume_from_midway(
        tmp_path, [*TINY, "train.augment=[color,translation,cutout]", "model.ema=0.9", "optimizer.schedule=linear"]
    )
    assert_resumed_with_ema(a, b)
    means = [k for k in a["models"]["G_ema"] if k.endswith("running_mean")]
    assert means and not torch.equal(a["models"]["G_ema"][means[0]], a["models"]["G"][means[0]]), (
        "the EMA has statistics of its own"
    )


@pytest.mark.slow
def test_extending_a_run_with_warmup_and_ema_matches_a_longer_run(tmp_path: Path) -> None:
    """4 steps, then resume with train.steps=8, equals 8 straight steps: the warm-up and the EMA's warm-up
    count carry over. (A constant schedule: linear and cosine decay to 0 at train.steps, so a run
    planned for 4 steps has a different lr than one planned for 8.)"""
    args = [*TOY, "optimizer.warmup=2", "model.ema=0.9"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    straight.mkdir(), split.mkdir()
    run_gan("train", *args, "train.steps=8", cwd=straight, check=True)
    run_gan("train", *args, "train.steps=4", cwd=split, check=True)
    run = only_run_dir(split)
    run_gan("train", f"resume={run}", "train.steps=8", cwd=split, check=True)
    assert_resumed_with_ema(load_last(only_run_dir(straight)), load_last(run))


# ---------------------------------------------------------------------------------------------
# 5. DiffAugment inside the training step
# ---------------------------------------------------------------------------------------------
class Spy:
    """An augmentation that records what it is called with and what it returns."""

    def __init__(self, augment: DiffAugment) -> None:
        self.augment, self.inputs, self.outputs = augment, [], []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.augment(x)
        self.inputs.append(x)
        self.outputs.append(out)
        return out


def image_setup(seed: int = 0):
    cfg = compose_train("model=dcgan", *SMALL)
    torch.manual_seed(seed)
    G, D = build_models(cfg.model, MNIST_SPEC)
    loss = build_loss(cfg.loss)
    opt_g, opt_d = build_optimizers(cfg.optimizer, G, D)
    return G, D, loss, opt_g, opt_d


def test_augment_sees_real_and_fake_in_d_step_and_fake_in_g_step() -> None:
    """Per step (n_critic=1): real, detached fake (D step), then fake with its graph (G step); G learns through it."""
    G, D, loss, opt_g, opt_d = image_setup()
    data = batcher(MNIST_SPEC, 4)
    first_real, _ = batcher(MNIST_SPEC, 4).next()  # the batch the step will draw
    spy = Spy(DiffAugment(POLICIES))
    g_before = [p.detach().clone() for p in G.parameters()]
    stats = train_step(G, D, loss, opt_g, opt_d, data, CPU, augment=spy)
    assert len(spy.inputs) == 3
    real, fake_d, fake_g = spy.inputs
    assert torch.equal(real, first_real)
    assert not fake_d.requires_grad and fake_g.requires_grad and torch.equal(fake_d, fake_g.detach())
    assert all(not torch.equal(i, o) for i, o in zip(spy.inputs, spy.outputs)), "every batch D sees is augmented"
    assert all(torch.isfinite(v).all() for v in stats.values())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters()), (
        "G's gradient flows through the augmentation"
    )
    assert any(not torch.equal(a, b) for a, b in zip(g_before, G.parameters())), "G did not move"

    spy.inputs.clear()
    loss.n_critic = 3
    train_step(G, D, loss, opt_g, opt_d, data, CPU, augment=spy)
    assert len(spy.inputs) == 2 * 3 + 1


def test_augment_at_strength_0_is_the_unaugmented_step() -> None:
    """An identity augmentation changes nothing: same RNG, same weights and statistics as augment=None."""
    results = []
    for augment in (None, Spy(DiffAugment(POLICIES, strength=0.0))):
        G, D, loss, opt_g, opt_d = image_setup(seed=3)
        torch.manual_seed(11)
        stats = train_step(G, D, loss, opt_g, opt_d, batcher(MNIST_SPEC, 4), CPU, augment=augment)
        results.append((stats, G.state_dict(), D.state_dict()))
    (s0, g0, d0), (s1, g1, d1) = results
    assert_same(s0, s1, "stats")
    assert_same(g0, g1, "G")
    assert_same(d0, d1, "D")


# ---------------------------------------------------------------------------------------------
# model.cond=auto (dcgan's default): a conditional GAN where the data has labels
# ---------------------------------------------------------------------------------------------
def test_cond_auto_is_concat_on_labelled_data_and_unconditional_otherwise() -> None:
    assert compose_train().model.cond == "auto"
    G, D = models("dcgan", MNIST_SPEC, "model.cond=auto")
    assert num_classes(G) == 10 and D.label_input is not None
    G, D = models("dcgan", DataSpec("folder", (1, 28, 28), 0), "model.cond=auto")
    assert num_classes(G) == 0 and D.label_input is None
    explicit_G, explicit_D = models("dcgan", MNIST_SPEC, "model.cond=concat")
    auto_G, auto_D = models("dcgan", MNIST_SPEC, "model.cond=auto")
    assert_same(explicit_G.state_dict(), auto_G.state_dict(), "G")
    with pytest.raises(GanError, match="model.pack=2.*model.cond=none"):
        models("dcgan", MNIST_SPEC, "model.cond=auto", "model.pack=2")


# ---------------------------------------------------------------------------------------------
# lazy regularisation (loss.penalty_every) and ACGAN's class head
# ---------------------------------------------------------------------------------------------
def toy_setup(*overrides: str):
    cfg = compose_train("model=mlp", *SMALL, *overrides)
    torch.manual_seed(0)
    G, D = build_models(cfg.model, TOY_SPEC)
    return G, D, build_loss(cfg.loss), *build_optimizers(cfg.optimizer, G, D)


@pytest.mark.parametrize(
    "n_critic,every,due", [(1, 3, [1, 4, 7]), (2, 3, [1, 2, 4, 5, 7]), (1, 1, [1, 2, 3, 4, 5, 6, 7])]
)
def test_lazy_penalty_runs_on_every_nth_d_step_counted_from_the_start(
    n_critic: int, every: int, due: list[int]
) -> None:
    """D steps are numbered (step - 1) * n_critic + i; the penalty runs where that is a multiple of penalty_every."""
    G, D, loss, opt_g, opt_d = toy_setup(
        "loss.penalty=r1", "loss.penalty_weight=1", f"loss.penalty_every={every}", f"loss.n_critic={n_critic}"
    )
    calls: list[int] = []
    inner = loss.penalty

    def spy(d_fn, real, fake):
        calls.append(step)
        return inner(d_fn, real, fake)

    loss.penalty = spy
    data = batcher(TOY_SPEC, 4)
    for step in range(1, 8):
        stats = train_step(G, D, loss, opt_g, opt_d, data, CPU, step=step)
        assert (float(stats["loss/penalty"]) != 0) == (step in due), (
            step,
            stats["loss/penalty"],
        )  # logged 0 when not run
    assert sorted(set(calls)) == due


def test_lazy_penalty_is_weighted_by_its_interval() -> None:
    """On a due step, penalty_every=4 pulls D four times as hard as penalty_every=1: same D gradient as weight x 4."""
    grads = []
    for every, weight in ((4, 1.0), (1, 4.0)):
        G, D, loss, opt_g, opt_d = toy_setup(
            "loss.penalty=r1", f"loss.penalty_weight={weight}", f"loss.penalty_every={every}", "optimizer.lr=0"
        )
        torch.manual_seed(5)
        train_step(G, D, loss, opt_g, opt_d, batcher(TOY_SPEC, 4), CPU, step=1)
        grads.append(torch.cat([p.grad.flatten() for p in D.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_lazy_penalty_interval_below_1_is_refused() -> None:
    with pytest.raises(GanError, match=r"loss\.penalty_every=0"):
        build_loss(compose_train("loss.penalty=r1", "loss.penalty_every=0").loss)


@pytest.mark.parametrize("on_fake", [False, True])
def test_acgan_class_head_learns_from_fakes_only_when_asked(on_fake: bool) -> None:
    """loss.aux_on_fake=false (default): D's class loss is the cross-entropy on real data alone, so the head cannot
    learn a mark G puts on its fakes; true adds the fakes' cross-entropy, the paper's loss."""
    import torch.nn.functional as F

    loss = build_loss(
        compose_train("model.cond=acgan", f"loss.aux_on_fake={str(on_fake).lower()}", "loss.aux_weight=0.5").loss
    )
    y = torch.tensor([0, 1, 2])
    real, fake = {"class_logits": torch.randn(3, 10)}, {"class_logits": torch.randn(3, 10)}
    terms = loss.extra.d_terms(nn.Linear(1, 1), None, real, fake, y, torch.zeros(3, 1), torch.zeros(3))
    expected = F.cross_entropy(real["class_logits"], y) + (F.cross_entropy(fake["class_logits"], y) if on_fake else 0)
    torch.testing.assert_close(terms["loss/ac"], 0.5 * expected)
