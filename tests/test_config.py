"""Every config option composes; presets set what their papers say; bad overrides fail early and clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TINY, compose_train, run_gan
from omegaconf import OmegaConf

from gan_cli.config import config_dir

GROUPS = ("model", "loss", "optimizer", "dataset", "experiment", "debug")
ADDED = ("debug",)  # groups train.yaml's defaults do not list: an option of theirs is added with +, as in +debug=tiny


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def choose(group: str, option: str) -> str:
    return f"{'+' if group in ADDED else ''}{group}={option}"


def test_the_groups_tested_here_are_every_folder_of_options() -> None:
    folders = {p.name for p in config_dir().iterdir() if p.is_dir()} - {"hydra", "base"}  # Hydra's own; shared bases
    assert folders == set(GROUPS), "a new folder under conf/ needs its options composed by the tests below"


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(group: str, option: str) -> None:
    cfg = compose_train(choose(group, option))
    assert cfg.train.steps > 0


def test_the_tiny_debug_preset_is_the_tiny_case_the_tests_train_with() -> None:
    """`+debug=tiny` on the command line composes exactly the config helpers.TINY's overrides compose."""
    assert OmegaConf.to_container(compose_train("+debug=tiny")) == OmegaConf.to_container(compose_train(*TINY))
    assert OmegaConf.to_container(compose_train("+debug=tiny")) != OmegaConf.to_container(compose_train())
    # last in the defaults list: its values win over a preset's
    assert compose_train("experiment=ring8", "+debug=tiny").train.batch_size == 16


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
    assert (dc.model.name, dc.loss.objective, dc.optimizer.lr, list(dc.optimizer.betas)) == (
        "dcgan",
        "ns",
        2e-4,
        [0.5, 0.999],
    )


def test_defaults_are_the_documented_ones() -> None:
    cfg = compose_train()
    assert (cfg.model.name, cfg.loss.objective, cfg.optimizer.name, cfg.dataset.name, cfg.device) == (
        "dcgan",
        "ns",
        "adam",
        "mnist5k",
        "auto",
    )
    assert compose_train("loss=wgan").loss.n_critic == 5 and compose_train("loss=ns").loss.n_critic == 1


def test_presets_override_the_defaults_of_train_yaml() -> None:
    cfg = compose_train("experiment=mode_collapse", "loss=wgan_gp")
    assert (cfg.dataset.name, cfg.model.name, cfg.model.z_dim) == ("ring8", "mlp", 8)
    assert (cfg.optimizer.name, cfg.optimizer.lr, list(cfg.optimizer.betas)) == ("adam", 5e-4, [0.0, 0.9])
    assert (cfg.train.steps, cfg.train.batch_size, cfg.eval.every, list(cfg.eval.metrics)) == (
        2000,
        256,
        250,
        ["modes"],
    )
    assert (cfg.loss.objective, cfg.loss.n_critic) == ("wasserstein", 5)


@pytest.mark.parametrize(
    "override,expected",
    [
        ("model=dcgn", ["model/dcgn", "Available options in 'model'", "dcgan", "mlp"]),
        ("train.steps=abc", ["train.steps=abc", "could not be converted to Integer"]),
        ("train.stpes=5", ["train.stpes"]),
        ("loss=wgan_gpp", ["loss/wgan_gpp", "wgan_gp", "hinge"]),
        # a choice key is an Enum: refused while composing, with the allowed values
        ("model.d_norm=btach", ["'btach'", "batch, layer, spectral, none", "model.d_norm"]),
        ("train.augment=[color,transl]", ["'transl'", "color, translation, cutout"]),
        ("optimizer.schedule=cosin", ["'cosin'", "constant, linear, cosine"]),
        # + adds a key nothing reads: refused, with or without the group prefix
        ("+foo=1", ["'foo'", "does not have"]),
        ("+train.stepz=10", ["'train.stepz'", "Did you mean train.steps?"]),
        # checked by building the models before the data are read
        ("model.info_cat=1", ["model.info_cat=1"]),
        ("model.g_norm=virtual model=mlp", ["model.g_norm=virtual"]),
    ],
)
def test_bad_overrides_give_one_paragraph_and_exit_2(workdir: Path, override: str, expected: list[str]) -> None:
    proc = run_gan("train", *override.split(), cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gan: error:")
    for text in expected:
        assert text in proc.stderr, (text, proc.stderr)
    assert not (workdir / "outputs").exists(), "a rejected command must not create a run directory"


@pytest.mark.slow
def test_help_lists_commands_and_groups(workdir: Path) -> None:
    top = run_gan("--help", cwd=workdir, check=True)
    assert "train" in top.stdout and "sample" in top.stdout
    train = run_gan("train", "--help", cwd=workdir, check=True)
    for chosen in ("model=dcgan", "loss=ns", "optimizer=adam", "dataset=mnist5k", "experiment presets"):
        assert chosen in train.stdout
    assert "wgan_gp" in train.stdout and "mnist5k" in train.stdout
    assert (
        "  attention: 0 " in train.stdout and "# latent size" in train.stdout
    )  # the keys dcgan reads, with their YAML comments
    # only the keys the chosen options read: no self-attention for an MLP, no label smoothing for a Wasserstein critic,
    # no Adam betas for SGD; the values are this composition's
    other = run_gan("train", "model=mlp", "loss=wgan_gp", "optimizer=sgd", "--help", cwd=workdir, check=True).stdout
    assert "model=mlp" in other and "attention:" not in other and "g_act: leaky" in other
    assert (
        "label_smoothing" not in other and "penalty: gp" in other and "betas" not in other and "momentum: 0.5" in other
    )
    assert not (workdir / "outputs").exists()
    for command in ("sample", "eval"):  # their options only: they take no config group, so none is offered
        text = run_gan(command, "--help", cwd=workdir, check=True).stdout
        assert "ckpt:" in text and "Configuration groups" not in text and "optimizer:" not in text
    bad = run_gan("trian", cwd=workdir)
    assert bad.returncode == 2 and "Unknown command 'trian'" in bad.stderr


def test_every_choice_enum_lists_exactly_what_its_registry_offers() -> None:
    """The schema's Enums (what Hydra accepts) and the registries (what the code builds) are one list of names."""
    from gan_cli import config as c
    from gan_cli.losses import PENALTIES
    from gan_cli.metrics.backbones import BACKBONES
    from gan_cli.models import D_NORMS, G_NORMS
    from gan_cli.models.layers import CONDITIONINGS, MINIBATCH_LAYERS
    from gan_cli.models.mlp import G_ACTIVATIONS
    from gan_cli.sample import MODES
    from gan_cli.schedules import SCHEDULES
    from gan_cli.training.augment import POLICIES
    from gan_cli.training.speed import AMP_MODES, SWITCH_VALUES

    pairs = [
        (c.DNorm, D_NORMS),
        (c.GNorm, G_NORMS),
        (c.Conditioning, (*CONDITIONINGS, "auto")),
        (c.Minibatch, MINIBATCH_LAYERS),
        (c.GActivation, G_ACTIVATIONS),
        (c.Penalty, PENALTIES),
        (c.Schedule, SCHEDULES),
        (c.Switch, SWITCH_VALUES),
        (c.AmpMode, AMP_MODES),
        (c.AugmentPolicy, POLICIES),
        (c.Backbone, BACKBONES),
        (c.SampleMode, MODES),
    ]
    for enum, registry in pairs:
        assert sorted(m.value for m in enum) == sorted(registry), enum.__name__


def test_a_choice_compares_and_prints_as_its_name_and_checkpoints_store_plain_strings() -> None:
    from gan_cli.config import to_plain

    cfg = compose_train("model=dcgan", "model.d_norm=layer", "train.augment=[translation]")
    assert cfg.model.d_norm == "layer" and f"{cfg.model.d_norm}" == "layer" and str(cfg.model.d_norm) == "layer"
    assert {"layer": 1}[cfg.model.d_norm] == 1
    plain = to_plain(cfg)
    assert type(plain["model"]["d_norm"]) is str and type(plain["train"]["augment"][0]) is str


def test_every_option_file_selects_a_registered_component_and_states_only_what_differs_from_its_base() -> None:
    """One registry per group and one default per key: conf/<group>/*.yaml name exactly the registry's built-ins,
    and no option file repeats a value its group's base (conf/base/<group>.yaml) already holds."""
    from omegaconf import OmegaConf

    from gan_cli.components import Registry
    from gan_cli.config import base_values, yaml_values
    from gan_cli.data.datasets import DATASETS
    from gan_cli.losses import OBJECTIVES
    from gan_cli.models import MODELS
    from gan_cli.optimizers import OPTIMIZERS

    registries: dict[str, Registry] = {
        "model": MODELS,
        "loss": OBJECTIVES,
        "optimizer": OPTIMIZERS,
        "dataset": DATASETS,
    }
    for group, registry in registries.items():
        base = base_values(group)
        selected = set()
        for path in sorted((config_dir() / group).glob("*.yaml")):
            values = yaml_values(path)
            selected.add(values[registry.selector])
            for key in values:
                assert key in base.keys(), f"{path.name}: {key} is not a key of conf/base/{group}.yaml"
                if key != registry.selector and not OmegaConf.is_missing(values, key):
                    assert values[key] != base[key], (
                        f"{path.name} repeats {group}.{key}={values[key]}, the base default"
                    )
        assert selected == set(registry), group
