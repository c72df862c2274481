"""The two training loops the benchmark races: `gan`'s own step, and the canonical loop it must beat.

Both build the same networks from the same composed config (`gan_cli.models.build_models`), use
the same optimizer settings and the same data, so the only differences are in how the loop is
written. `CanonicalLoop` follows pytorch/examples `dcgan/main.py`: a DataLoader over PIL images
with torchvision transforms, a Sigmoid on D with BCELoss, `zero_grad()` without set_to_none, a
plain (for-loop) Adam and an `.item()` per step for the progress line. For WGAN-GP it does what
the usual PyTorch ports of Gulrajani et al. do, in the same style.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from gan_cli.config import config_dir, register_schemas
from gan_cli.data import DataSpec, LoadedData, load_dataset, make_batcher
from gan_cli.losses import build_loss
from gan_cli.models import build_models
from gan_cli.optimizers import build_optimizers
from gan_cli.training.speed import Precision, enable_backend_speedups, plan_speed, prepare_models
from gan_cli.training.step import train_step


@dataclass
class Case:
    """One benchmark line: a composed config plus the data it trains on."""

    name: str
    overrides: list[str]
    data: str = "mnist5k"  # mnist5k | random (CIFAR-shaped uint8 noise images) | ring8
    image_size: int = 32
    channels: int = 3
    batch_size: int = 64
    n: int = 5000  # examples of random data
    speed: list[str] = field(default_factory=list)  # train.* speed overrides of the gan side


def compose_config(case: Case) -> DictConfig:
    register_schemas()
    # the canonical loop is pytorch/examples' unconditional DCGAN: the throughput race compares the same networks
    overrides = [
        "model.cond=none",
        *case.overrides,
        f"train.batch_size={case.batch_size}",
        "device=cpu" if not torch.cuda.is_available() else "device=cuda",
        *case.speed,
    ]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def load_case_data(case: Case, cfg: DictConfig) -> LoadedData:
    """The dataset as `gan` loads it; `random` is CIFAR-shaped uint8 noise quantised like real images."""
    if case.data != "random":
        return load_dataset(cfg.dataset, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    u8 = torch.randint(
        0, 256, (case.n, case.channels, case.image_size, case.image_size), generator=gen, dtype=torch.uint8
    )
    return LoadedData(DataSpec("random", tuple(u8.shape[1:]), 0), u8.float().div(127.5).sub(1.0))


def device_of(cfg: DictConfig) -> torch.device:
    return torch.device(cfg.device)


# ---------------------------------------------------------------------------------------------
# gan's loop: the runner's own train_step with the speed paths train.* selects
# ---------------------------------------------------------------------------------------------
class GanLoop:
    name = "gan"

    def __init__(
        self, cfg: DictConfig, data: LoadedData, G: nn.Module, D: nn.Module, seed_order: Optional[Iterable[int]] = None
    ) -> None:
        self.device = device_of(cfg)
        self.batch_size = cfg.train.batch_size
        self.joint = cfg.train.d_pass == "joint"
        self.loss = build_loss(cfg.loss)
        self.G, self.D = G.to(self.device), D.to(self.device)
        plan = plan_speed(cfg.train, self.device, data.spec.is_image, data.x.nbytes)
        enable_backend_speedups(self.device)
        self.G_run, self.D_run = prepare_models(self.G, self.D, plan)
        self.amp = Precision(plan.amp, self.device)
        self.opt_g, self.opt_d = build_optimizers(cfg.optimizer, self.G, self.D)
        self.batcher = make_batcher(data, self.batch_size, self.device, cfg.seed, 0, on_device=plan.data_on_device)
        self.plan = plan

    @property
    def images_per_step(self) -> int:
        return self.batch_size * self.loss.n_critic

    def step(self) -> dict[str, torch.Tensor]:
        return train_step(
            self.G_run,
            self.D_run,
            self.loss,
            self.opt_g,
            self.opt_d,
            self.batcher,
            self.device,
            self.amp,
            joint=self.joint,
        )

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# ---------------------------------------------------------------------------------------------
# the canonical loop (pytorch/examples dcgan/main.py style), on the same networks and data
# ---------------------------------------------------------------------------------------------
class PerSampleImages(Dataset):
    """uint8 images handed out one at a time as PIL images through torchvision transforms, as torchvision's MNIST/CIFAR10 do."""

    def __init__(self, images_u8: torch.Tensor, transform) -> None:
        self.data = images_u8.permute(0, 2, 3, 1).numpy()  # N x H x W x C, like the datasets' .data
        self.gray = images_u8.shape[1] == 1
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        a = self.data[i]
        img = Image.fromarray(a[..., 0], mode="L") if self.gray else Image.fromarray(a)
        return self.transform(img), 0


class PerSamplePoints(Dataset):
    """Toy points handed out one at a time as numpy rows, turned into tensors by a per-sample transform."""

    def __init__(self, points: torch.Tensor) -> None:
        self.data = points.numpy()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return torch.from_numpy(np.array(self.data[i])), 0


def canonical_dataset(data: LoadedData) -> Dataset:
    if not data.spec.is_image:
        return PerSamplePoints(data.x)
    c, size, _ = data.spec.shape
    u8 = data.x.add(1.0).mul(127.5).round().to(torch.uint8)  # back to the bytes an image file holds
    transform = transforms.Compose(
        [transforms.Resize(size), transforms.ToTensor(), transforms.Normalize((0.5,) * c, (0.5,) * c)]
    )
    return PerSampleImages(u8, transform)


class CanonicalLoop:
    name = "baseline"

    def __init__(
        self, cfg: DictConfig, data: LoadedData, G: nn.Module, D: nn.Module, sampler=None, workers: int = 2
    ) -> None:
        """`sampler`: an index order (the equal-math test passes gan's); None shuffles as main.py does."""
        self.device = device_of(cfg)
        self.batch_size = cfg.train.batch_size
        self.z_dim = cfg.model.z_dim
        self.wgan = cfg.loss.objective == "wasserstein"
        self.n_critic = cfg.loss.n_critic
        self.gp_weight = cfg.loss.penalty_weight if cfg.loss.penalty == "gp" else 0.0
        self.netG = G.to(self.device)
        self.netD = D.to(self.device) if self.wgan else nn.Sequential(D, nn.Sigmoid()).to(self.device)
        self.criterion = nn.BCELoss()
        o = cfg.optimizer
        self.optimizerD = torch.optim.Adam(
            self.netD.parameters(), lr=o.lr_d or o.lr, betas=tuple(o.betas), foreach=False
        )
        self.optimizerG = torch.optim.Adam(
            self.netG.parameters(), lr=o.lr_g or o.lr, betas=tuple(o.betas), foreach=False
        )
        self.dataloader = DataLoader(
            canonical_dataset(data),
            batch_size=self.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
        )
        self._it = iter(self.dataloader)
        self.log: list[tuple[float, float]] = []

    @property
    def images_per_step(self) -> int:
        return self.batch_size * self.n_critic

    def _next_real(self) -> torch.Tensor:
        try:
            data = next(self._it)
        except StopIteration:  # a new epoch, as main.py's `for epoch ... for i, data in enumerate(dataloader)`
            self._it = iter(self.dataloader)
            data = next(self._it)
        return data[0].to(self.device)

    def step(self) -> tuple[float, float]:
        return self._wgan_gp_step() if self.wgan else self._dcgan_step()

    def _dcgan_step(self) -> tuple[float, float]:
        netD, netG = self.netD, self.netG
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        real_cpu = self._next_real()
        label = torch.full((self.batch_size,), 1.0, device=self.device)
        output = netD(real_cpu)
        errD_real = self.criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.randn(self.batch_size, self.z_dim, 1, 1, device=self.device)
        fake = netG(noise)
        label.fill_(0.0)
        output = netD(fake.detach())
        errD_fake = self.criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        self.optimizerD.step()
        # (2) Update G network: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(1.0)
        output = netD(fake)
        errG = self.criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        self.optimizerG.step()
        stats = (errD.item(), errG.item())
        self.log.append(stats)  # main.py prints these (and D_x, D_G_z1, D_G_z2) every step
        del D_x, D_G_z1, D_G_z2
        return stats

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        alpha = torch.rand(real.size(0), *([1] * (real.dim() - 1)), device=self.device)
        interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        disc_interpolates = self.netD(interpolates)
        gradients = torch.autograd.grad(
            outputs=disc_interpolates,
            inputs=interpolates,
            grad_outputs=torch.ones_like(disc_interpolates),
            create_graph=True,
            retain_graph=True,
        )[0]
        return ((gradients.view(gradients.size(0), -1).norm(2, dim=1) - 1) ** 2).mean()

    def _wgan_gp_step(self) -> tuple[float, float]:
        netD, netG = self.netD, self.netG
        for p in netD.parameters():
            p.requires_grad = True
        for _ in range(self.n_critic):
            real = self._next_real()
            noise = torch.randn(self.batch_size, self.z_dim, device=self.device)
            fake = netG(noise)
            netD.zero_grad()
            D_real = netD(real).mean()
            D_fake = netD(fake.detach()).mean()
            gradient_penalty = self._gradient_penalty(real, fake.detach())
            D_cost = D_fake - D_real + self.gp_weight * gradient_penalty
            D_cost.backward()
            self.optimizerD.step()
            Wasserstein_D = (D_real - D_fake).item()
        for p in netD.parameters():
            p.requires_grad = False
        netG.zero_grad()
        G_cost = -netD(fake).mean()  # the last critic batch's fake, as gan's step does
        G_cost.backward()
        self.optimizerG.step()
        stats = (D_cost.item(), G_cost.item())
        self.log.append(stats)
        del Wasserstein_D
        return stats

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _build(case: Case) -> tuple[DictConfig, LoadedData, nn.Module, nn.Module]:
    cfg = compose_config(case)
    torch.manual_seed(cfg.seed)
    data = load_case_data(case, cfg)
    G, D = build_models(cfg.model, data.spec)
    return cfg, data, G, D


def build_pair(case: Case, workers: int = 2, sampler=None) -> tuple[GanLoop, CanonicalLoop]:
    """gan's loop and the baseline, on identical initial weights (one build, deep-copied) and the same data."""
    cfg, data, G, D = _build(case)
    baseline = CanonicalLoop(cfg, data, copy.deepcopy(G), copy.deepcopy(D), sampler=sampler, workers=workers)
    return GanLoop(cfg, data, G, D), baseline


def build_loop(case: Case, which: str, workers: int = 2) -> GanLoop | CanonicalLoop:
    """Only one of the two (for measuring its memory alone)."""
    cfg, data, G, D = _build(case)
    return GanLoop(cfg, data, G, D) if which == "gan" else CanonicalLoop(cfg, data, G, D, workers=workers)
