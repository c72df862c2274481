"""Porting a published GAN into gan (issue 29): pytorch/examples' DCGAN and eriklindernoren/PyTorch-GAN's WGAN-GP,
written here in their public form (small widths), plugged in through a `--config-dir` as docs/components.md shows.
As published they break the contract in three ways a user meets in turn -- a one-argument forward, a 2-D z fed
to a ConvTranspose2d, a Sigmoid at the end of D -- and each stops before step 1 with one paragraph saying what
to change; with those minimal changes both train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY, only_run_dir, run_gan
from torch import nn

from gan_cli.contracts import check_models
from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError

# pytorch/examples dcgan/main.py (64 x 64 images; nc, nz, ngf, ndf come from its options), widths made small
DCGAN_HEAD = """
import torch
import torch.nn as nn

nc, nz, ngf, ndf = 1, 16, 4, 4


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find('Conv') != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find('BatchNorm') != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)
"""
DCGAN_G = """
class Generator(nn.Module):
    def __init__(self, ngpu):
        super(Generator, self).__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            # input is Z, going into a convolution
            nn.ConvTranspose2d(     nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            # state size. (ngf*8) x 4 x 4
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            # state size. (ngf*4) x 8 x 8
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # state size. (ngf*2) x 16 x 16
            nn.ConvTranspose2d(ngf * 2,     ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            # state size. (ngf) x 32 x 32
            nn.ConvTranspose2d(    ngf,      nc, 4, 2, 1, bias=False),
            nn.Tanh()
            # state size. (nc) x 64 x 64
        )

    def forward(self, input):
        if input.is_cuda and self.ngpu > 1:
            output = nn.parallel.data_parallel(self.main, input, range(self.ngpu))
        else:
            output = self.main(input)
        return output
"""
DCGAN_D = """
class Discriminator(nn.Module):
    def __init__(self, ngpu):
        super(Discriminator, self).__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            # input is (nc) x 64 x 64
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf) x 32 x 32
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*2) x 16 x 16
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*4) x 8 x 8
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*8) x 4 x 4
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid()
        )

    def forward(self, input):
        if input.is_cuda and self.ngpu > 1:
            output = nn.parallel.data_parallel(self.main, input, range(self.ngpu))
        else:
            output = self.main(input)

        return output.view(-1, 1).squeeze(1)
"""
DCGAN_BUILD = """

def build(spec):
    netG, netD = Generator(1), Discriminator(1)
    netG.apply(weights_init)
    netD.apply(weights_init)
    netG.z_dim = nz  # gan draws z of shape N x z_dim
    return netG, netD
"""

# PyTorch-GAN implementations/wgan_gp/wgan_gp.py (opt.latent_dim, img_shape from its options), widths made small
WGAN_HEAD = """
import numpy as np
import torch.nn as nn

latent_dim = 16
img_shape = (1, 28, 28)
"""
WGAN_G = """
class Generator(nn.Module):
    def __init__(self):
        super(Generator, self).__init__()

        def block(in_feat, out_feat, normalize=True):
            layers = [nn.Linear(in_feat, out_feat)]
            if normalize:
                layers.append(nn.BatchNorm1d(out_feat, 0.8))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.model = nn.Sequential(
            *block(latent_dim, 16, normalize=False),
            *block(16, 32),
            *block(32, 64),
            *block(64, 128),
            nn.Linear(128, int(np.prod(img_shape))),
            nn.Tanh()
        )

    def forward(self, z):
        img = self.model(z)
        img = img.view(img.shape[0], *img_shape)
        return img
"""
WGAN_D = """
class Discriminator(nn.Module):
    def __init__(self):
        super(Discriminator, self).__init__()

        self.model = nn.Sequential(
            nn.Linear(int(np.prod(img_shape)), 64),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(64, 32),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(32, 1),
        )

    def forward(self, img):
        img_flat = img.view(img.shape[0], -1)
        validity = self.model(img_flat)
        return validity
"""
WGAN_BUILD = """

def build(spec):
    generator, discriminator = Generator(), Discriminator()
    generator.z_dim = latent_dim  # gan draws z of shape N x z_dim
    return generator, discriminator
"""

# the documented minimal changes, as (old, new) edits of the published text
G_TAKES_Y = ("def forward(self, input):", "def forward(self, input, y=None):")
G_RESHAPES_Z = (
    "def forward(self, input, y=None):\n",
    "def forward(self, input, y=None):\n        input = input.view(len(input), -1, 1, 1)\n",
)
D_TAKES_Y = ("def forward(self, input):", "def forward(self, input, y=None):")
NO_SIGMOID = (",\n            nn.Sigmoid()\n", "\n")
WGAN_G_TAKES_Y = ("def forward(self, z):", "def forward(self, z, y=None):")
WGAN_D_TAKES_Y = ("def forward(self, img):", "def forward(self, img, y=None):")
WGAN_D_PER_SAMPLE = ("return validity\n", "return validity.squeeze(1)\n")

DCGAN_ARGS = ["dataset.image_size=64"]  # the published DCGAN is built for 64 x 64 images
WGAN_ARGS = ["loss=wgan_gp", "loss.n_critic=1"]
# helpers.TINY without the built-in architectures' keys (refused for a _target_ model)
SMALL = [a for a in TINY if not a.startswith("model.")] + ["train.steps=4", "train.threads=1"]


def edited(text: str, *edits: tuple[str, str]) -> str:
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def port(workdir: Path, name: str, source: str) -> list[str]:
    """`source` as ported/nets.py, a model YAML naming its build in my_conf/model/; the arguments that select it."""
    (workdir / "ported").mkdir(exist_ok=True)
    (workdir / "ported" / "__init__.py").write_text("")
    (workdir / "ported" / "nets.py").write_text(source)
    (workdir / "my_conf" / "model").mkdir(parents=True, exist_ok=True)
    (workdir / "my_conf" / "model" / f"{name}.yaml").write_text(f"name: {name}\n_target_: ported.nets.build\n")
    return ["train", "--config-dir", "my_conf", f"model={name}"]


def refused(workdir: Path, name: str, source: str, *args: str) -> str:
    proc = run_gan(*port(workdir, name, source), *SMALL, *args, cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("gan: error:") and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # one paragraph
    assert f"model={name} (ported.nets.build)" in proc.stderr
    assert not (workdir / "outputs").exists(), "refused before a run directory exists"
    return proc.stderr


@pytest.mark.parametrize(
    ("name", "source", "args"),
    [
        ("dcgan_ex", DCGAN_HEAD + DCGAN_G + DCGAN_D + DCGAN_BUILD, DCGAN_ARGS),
        ("wgan_gp_ex", WGAN_HEAD + WGAN_G + WGAN_D + WGAN_BUILD, WGAN_ARGS),
    ],
)
def test_a_published_one_argument_forward_is_named_with_the_contract(
    workdir: Path, name: str, source: str, args: list[str]
) -> None:
    stderr = refused(workdir, name, source, *args)
    assert "generator" in stderr and "forward(z, y=None)" in stderr and "N × z_dim" in stderr
    assert "takes 2 positional arguments but 3 were given" in stderr  # the original error's line


def test_a_one_argument_forward_of_d_is_named_with_ds_contract(workdir: Path) -> None:
    source = DCGAN_HEAD + edited(DCGAN_G, G_TAKES_Y, G_RESHAPES_Z) + DCGAN_D + DCGAN_BUILD
    stderr = refused(workdir, "dcgan_ex", source, *DCGAN_ARGS)
    assert "discriminator" in stderr and "forward(x, y=None)" in stderr and "one raw logit per sample" in stderr


def test_a_2d_z_into_conv_transpose_names_the_reshape(workdir: Path) -> None:
    source = DCGAN_HEAD + edited(DCGAN_G, G_TAKES_Y) + edited(DCGAN_D, D_TAKES_Y) + DCGAN_BUILD
    stderr = refused(workdir, "dcgan_ex", source, *DCGAN_ARGS)
    assert "z.view(len(z), -1, 1, 1)" in stderr and "N × z_dim" in stderr
    assert "conv_transpose2d" in stderr  # torch's own line: Expected 3D (unbatched) or 4D (batched) input ...


def test_a_sigmoid_at_the_end_of_d_is_refused_with_why_and_the_fix(workdir: Path) -> None:
    source = DCGAN_HEAD + edited(DCGAN_G, G_TAKES_Y, G_RESHAPES_Z) + edited(DCGAN_D, D_TAKES_Y) + DCGAN_BUILD
    stderr = refused(workdir, "dcgan_ex", source, *DCGAN_ARGS)
    assert "ends in a Sigmoid (main.12, an nn.Sigmoid)" in stderr and "logits" in stderr and "BCE-with-logits" in stderr
    assert "all 2 outputs in (0, 1)" in stderr and "drop the final Sigmoid" in stderr


@pytest.mark.parametrize(
    ("name", "source", "args"),
    [
        (
            "dcgan_ex",
            DCGAN_HEAD
            + edited(DCGAN_G, G_TAKES_Y, G_RESHAPES_Z)
            + edited(DCGAN_D, D_TAKES_Y, NO_SIGMOID)
            + DCGAN_BUILD,
            DCGAN_ARGS,
        ),
        (
            "wgan_gp_ex",
            WGAN_HEAD + edited(WGAN_G, WGAN_G_TAKES_Y) + edited(WGAN_D, WGAN_D_TAKES_Y, WGAN_D_PER_SAMPLE) + WGAN_BUILD,
            WGAN_ARGS,
        ),
    ],
)
def test_with_the_documented_minimal_changes_both_train(workdir: Path, name: str, source: str, args: list[str]) -> None:
    proc = run_gan(*port(workdir, name, source), *SMALL, *args, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    status = json.loads((only_run_dir(workdir) / "status.json").read_text())
    assert status["status"] == "finished" and status["step"] == 4


# ---------------------------------------------------------------------------------------------
# the probe's rules in process
# ---------------------------------------------------------------------------------------------
RING = DataSpec("ring8", (2,), 8)


class PointG(nn.Module):
    z_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 2)

    def forward(self, z, y=None):
        return self.net(z)


class SmallLogitD(nn.Module):
    """Raw logits that happen to lie in (0, 1) at init, with a Sigmoid gate inside that is not the output."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid())
        self.head = nn.Linear(2, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.constant_(self.head.bias, 0.03)

    def forward(self, x, y=None):
        return self.head(x * self.gate(x)).squeeze(1)


class FunctionalSigmoidD(SmallLogitD):
    def forward(self, x, y=None):
        return torch.sigmoid(self.head(x)).view(-1)


class RaisesGanError(PointG):
    def forward(self, z, y=None):
        raise GanError("my own message")


def test_raw_logits_inside_0_1_pass_and_a_functional_sigmoid_is_caught() -> None:
    check_models(PointG(), SmallLogitD(), RING)  # outputs 0.03, 0.03: in (0, 1), but not a sigmoid's
    with pytest.raises(GanError, match=r"ends in a Sigmoid \(torch.sigmoid\): all 2 outputs in \(0, 1\)"):
        check_models(PointG(), FunctionalSigmoidD(), RING)


def test_a_gan_error_from_inside_a_users_network_is_kept_as_it_is() -> None:
    with pytest.raises(GanError, match="^my own message$"):
        check_models(RaisesGanError(), SmallLogitD(), RING)
