"""Layers shared by every architecture: label conditioning, spectral norm, self-attention,
minibatch layers, the discriminator's heads (projection, ACGAN, InfoGAN's Q), AdaIN.

Every D is a body (x -> feature vector h) followed by one `DiscriminatorHead`, so each
conditioning choice, minibatch layer and auxiliary head is written once and works for every
architecture; the heads' extra outputs (features, class logits, code estimates) are what the
extra loss terms of `gan_cli.losses` read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gan_cli.config import Conditioning, Minibatch, values_of
from gan_cli.parallel import stacked

CONDITIONINGS = tuple(c for c in values_of(Conditioning) if c != "auto")  # auto is resolved before a model is built
MINIBATCH_LAYERS = values_of(Minibatch)
_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every conv, linear and embedding weight.

    Applied after initialisation: the parametrisation divides the stored weight by its largest
    singular value (one power iteration per training forward), so D is 1-Lipschitz per layer.
    """
    for m in list(module.modules()):
        if isinstance(m, _WEIGHTED) and not hasattr(m, "parametrizations"):
            spectral_norm(m)
    return module


# ---------------------------------------------------------------------------------------------
# the latent: noise, then InfoGAN's codes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatentLayout:
    """z = [noise (n_noise) | one-hot categorical code (n_cat) | continuous codes (n_cont)].

    Keeping the codes inside z means every caller that draws z (training, fixed noise, sampling)
    gets valid codes, and the InfoGAN term reads them back from z without extra plumbing.
    """

    n_noise: int
    n_cat: int = 0
    n_cont: int = 0

    @property
    def size(self) -> int:
        return self.n_noise + self.n_cat + self.n_cont

    def sample(self, n: int, device, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        noise = torch.randn(n, self.n_noise, device=device, generator=generator)
        parts = [noise]
        if self.n_cat:
            cat = torch.randint(self.n_cat, (n,), device=device, generator=generator)
            parts.append(F.one_hot(cat, self.n_cat).to(noise.dtype))
        if self.n_cont:
            parts.append(torch.rand(n, self.n_cont, device=device, generator=generator) * 2 - 1)
        return torch.cat(parts, dim=1)

    def codes(self, z: torch.Tensor) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(categorical index, continuous codes) stored in z."""
        cat = z[:, self.n_noise : self.n_noise + self.n_cat].argmax(1) if self.n_cat else None
        cont = z[:, self.n_noise + self.n_cat :] if self.n_cont else None
        return cat, cont


class LabelToLatent(nn.Module):
    """G's side of a conditional GAN (Mirza & Osindero): a label embedding appended to z.

    Without labels G draws them cyclically (0, 1, 2, ...), so fixed-noise grids of a
    conditional model show every class.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, dim)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        if y is None:
            y = torch.arange(z.shape[0], device=z.device) % self.num_classes
        return torch.cat([z, self.embed(y).to(z.dtype)], dim=1)


class LabelToInput(nn.Module):
    """D's side of a conditional GAN: the one-hot label appended to x, as constant channels for images.

    A fixed one-hot code (as in the common conditional-DCGAN designs) gives D a clean signal from the
    first step; a learned embedding here started as noise, and D took thousands of steps to use it.
    """

    def __init__(self, num_classes: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.num_classes, self.shape = num_classes, shape

    @property
    def extra(self) -> int:
        """Channels (images) or features (vectors) this layer adds to x."""
        return self.num_classes

    @property
    def size(self) -> int:
        """Numbers this layer adds to each sample."""
        return self.num_classes * (math.prod(self.shape[1:]) if len(self.shape) == 3 else 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(y, self.num_classes).to(x.dtype)
        if len(self.shape) == 3:
            return torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
        return torch.cat([x.flatten(1), onehot], dim=1)


# ---------------------------------------------------------------------------------------------
# blocks
# ---------------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    """SAGAN's self-attention (Zhang et al. 2019): x + gamma * attention(x), gamma starting at 0.

    With gamma = 0 the block is the identity, so the network first learns local structure and
    mixes in long-range dependencies as gamma grows.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.query = nn.Conv2d(channels, inner, 1, bias=False)
        self.key = nn.Conv2d(channels, inner, 1, bias=False)
        self.value = nn.Conv2d(channels, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # B x HW x c'
        k = self.key(x).flatten(2).transpose(1, 2)
        v = self.value(x).flatten(2).transpose(1, 2)  # B x HW x C
        # SAGAN's softmax(q k^T) has no 1/sqrt(d) scaling
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        return x + self.gamma * out.transpose(1, 2).reshape(b, c, h, w)


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. 2016: features saying how close each sample is to the others in its batch.

    A collapsed generator makes near-identical samples; D sees the closeness and rejects them.
    """

    couples_batch = True  # models.layers.batch_coupled

    def __init__(self, in_features: int, kernels: int = 32, kernel_dim: int = 8) -> None:
        super().__init__()
        self.T = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) * 0.1)
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.out_features = in_features + kernels

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        m = (h @ self.T).view(-1, self.kernels, self.kernel_dim)  # N x B x C
        dist = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(3)  # N x N x B, L1 between samples
        closeness = torch.exp(-dist).sum(1) - 1  # minus each sample's match with itself
        return torch.cat([h, closeness], dim=1)


class MinibatchStdDev(nn.Module):
    """The simpler variant (Karras et al. 2018): one feature, the batch's mean per-feature standard deviation."""

    couples_batch = True

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.out_features = in_features + 1

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(h.float().var(0, unbiased=False) + 1e-8).mean().to(h.dtype)
        return torch.cat([h, std.expand(len(h), 1)], dim=1)


class AdaIN(nn.Module):
    """Adaptive instance norm (StyleGAN): each channel normalised per sample, then scaled and shifted by the style w.

    The style layer is StyleGAN's equalised-learning-rate dense layer: weights stored N(0, INIT_STD = 1) and scaled
    by GAIN / sqrt(w_dim) in the forward pass, biases 0, scale = 1 + style. A w of unit size (what the mapping
    network gives) then moves each channel's scale and shift by about GAIN across z from the first step. The
    earlier init, N(0, 0.02) weights on a w of size 0.02, moved them by 0.005: G drew the same image for every z
    and collapsed there (docs/variants.md). init_weights leaves the layer alone (`model.init_std` is for the
    convolutions)."""

    keeps_own_init = True
    INIT_STD = 1.0  # of the stored weights; the forward pass scales them by GAIN / sqrt(w_dim)
    GAIN = 1.0  # StyleGAN's: a unit w gives styles of about unit size

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.style = nn.Linear(w_dim, 2 * channels)
        nn.init.normal_(self.style.weight, 0.0, self.INIT_STD)
        nn.init.zeros_(self.style.bias)
        self.weight_scale = self.GAIN / math.sqrt(w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = F.linear(w, self.style.weight * self.weight_scale, self.style.bias)
        scale, shift = style.unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return F.instance_norm(x) * (1 + scale) + shift


# ---------------------------------------------------------------------------------------------
# the discriminator's head
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeadOptions:
    cond: str = "none"  # one of CONDITIONINGS
    num_classes: int = 0
    minibatch: str = "none"  # one of MINIBATCH_LAYERS
    info_cat: int = 0
    info_cont: int = 0


class DiscriminatorHead(nn.Module):
    """h -> logit, plus what the extra loss terms read: features, class logits, InfoGAN's code estimates."""

    def __init__(self, in_features: int, opts: HeadOptions) -> None:
        super().__init__()
        self.opts = opts
        self.minibatch: nn.Module = nn.Identity()
        features = in_features
        if opts.minibatch == "mbdisc":
            self.minibatch = MinibatchDiscrimination(in_features)
            features = self.minibatch.out_features
        elif opts.minibatch == "mbstd":
            self.minibatch = MinibatchStdDev(in_features)
            features = self.minibatch.out_features
        self.out = nn.Linear(features, 1)
        # projection discriminator (Miyato & Koyama 2018): logit += <embed(y), h>
        self.project = nn.Embedding(opts.num_classes, features) if opts.cond == "projection" else None
        if self.project is not None:  # the scale of a linear layer's default init: N(0, 1) rows would swamp the logit
            bound = 1 / math.sqrt(features)
            nn.init.uniform_(self.project.weight, -bound, bound)
        # ACGAN (Odena et al. 2017): D also classifies every sample
        self.classify = nn.Linear(features, opts.num_classes) if opts.cond == "acgan" else None
        # InfoGAN (Chen et al. 2016): Q shares D's body and estimates the codes from h
        n_codes = opts.info_cat + opts.info_cont
        self.q = (
            nn.Sequential(nn.Linear(features, 128), nn.LeakyReLU(0.2), nn.Linear(128, n_codes)) if n_codes else None
        )

    def forward(self, h: torch.Tensor, y: Optional[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        extras: dict[str, torch.Tensor] = {"features": h}
        h = self.minibatch(h)
        logit = self.out(h).squeeze(1)
        if self.project is not None:
            logit = logit + (self.project(y) * h).sum(1)
        if self.classify is not None:
            extras["class_logits"] = self.classify(h)
        if self.q is not None:
            q = self.q(h)
            extras["q_cat"], extras["q_cont"] = q[:, : self.opts.info_cat], q[:, self.opts.info_cat :]
        return logit, extras


class Discriminator(nn.Module):
    """Label input (concat conditioning) -> body -> flattened features -> head.

    `forward` returns logits only, as every loss and penalty expects; `forward_with_extras` also
    returns the head's extra outputs for the auxiliary loss terms.
    """

    def __init__(
        self, body: nn.Module, features: int, opts: HeadOptions, label_input: Optional[LabelToInput] = None
    ) -> None:
        super().__init__()
        self.label_input = label_input
        self.body = body
        self.head = DiscriminatorHead(features, opts)

    def forward_with_extras(
        self, x: torch.Tensor, y: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.label_input is not None:
            x = self.label_input(x, y)
        return self.head(self.body(x).flatten(1), y)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward_with_extras(x, y)[0]  # logits: no sigmoid inside the model


def discriminate(
    D: nn.Module, x: torch.Tensor, y: Optional[torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(logits, extras) for any D; models without heads (the 1-D logistic D) have no extras."""
    with_extras = getattr(D, "forward_with_extras", None)  # getattr also reaches through torch.compile's wrapper
    if with_extras is not None:
        return with_extras(x, y)
    return D(x, y), {}


Scored = tuple[torch.Tensor, dict[str, torch.Tensor]]


def discriminate_pair(
    D: nn.Module, real: torch.Tensor, fake: torch.Tensor, y: Optional[torch.Tensor], input_grad: bool = False
) -> tuple[Scored, Scored, torch.Tensor]:
    """D on real and fake in one pass over [real; fake] (the labels twice): for a D that scores each sample on
    its own (`batch_coupled(D)` empty) the logits and extras of two passes, from one forward and one backward
    through D with twice the rows (a few percent faster for small MLPs on a CPU: bench/d_pass.py).

    Returns ((real logits, extras), (fake logits, extras), the joint input); with `input_grad` that input
    requires grad, so R1 can be taken from this very pass instead of a pass of its own."""
    x = torch.cat([real, fake])
    if input_grad:
        x.requires_grad_(True)
    with stacked(2):  # a per-sample draw inside D (dropout) takes each rank's slice of the real and the fake half
        logits, extras = discriminate(D, x, None if y is None else torch.cat([y, y]))
    half = len(logits) // 2  # a packed D (PacGAN) returns one logit per pack: real packs first, then fake ones
    return (
        (logits[:half], {k: v[:half] for k, v in extras.items()}),
        (logits[half:], {k: v[half:] for k, v in extras.items()}),
        x,
    )


def batch_coupled(D: nn.Module) -> list[str]:
    """The kinds of layer in D whose output for a sample depends on the other samples of its batch: BatchNorm
    (in training mode), minibatch discrimination, minibatch std-dev (layers that say so by `couples_batch`).
    Such a D judges [real; fake] differently from real and fake apart, so it cannot share one pass."""
    return sorted(
        {
            type(m).__name__
            for m in D.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "couples_batch", False)
        }
    )


class LatentInput(nn.Module):
    """What every G reads first: z (noise and codes), with the label embedding appended when conditional."""

    def __init__(self, layout: LatentLayout, num_classes: int = 0) -> None:
        super().__init__()
        self.layout = layout
        self.labels = LabelToLatent(num_classes, num_classes) if num_classes else None
        self.size = layout.size + num_classes

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        return self.labels(z, y) if self.labels is not None else z


class VirtualBatchNorm2d(nn.Module):
    """Virtual batch norm (Salimans et al. 2016): statistics of a fixed reference batch plus the sample itself.

    The batch arrives as [reference rows | real rows]; the reference rows are normalised by
    their own statistics, every other sample by those combined with its own, so G's output for
    one z no longer depends on which other z's share its batch.
    """

    def __init__(self, channels: int, reference: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.reference, self.eps = reference, eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reference
        ref, own = x[:r], x[r:]
        ref_mean, ref_sq = ref.mean((0, 2, 3), keepdim=True), ref.square().mean((0, 2, 3), keepdim=True)
        own_mean, own_sq = own.mean((2, 3), keepdim=True), own.square().mean((2, 3), keepdim=True)
        mean = torch.cat([ref_mean.expand(r, -1, -1, -1), (r * ref_mean + own_mean) / (r + 1)])
        sq = torch.cat([ref_sq.expand(r, -1, -1, -1), (r * ref_sq + own_sq) / (r + 1)])
        var = (sq - mean.square()).clamp_min(0)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


CBN_EMBED = 128  # BigGAN's shared class embedding size


class ConditionalBatchNorm2d(nn.Module):
    """Class-conditional batch norm (de Vries et al. 2017; BigGAN, Brock et al. 2019): batch statistics without a
    learned affine of their own; each sample's gain (1 + gamma) and bias (beta) are linear maps of its class's
    embedding, which one embedding table shared by every layer of G provides. The label then steers every layer
    of G, not only its input; with the projection D this is BigGAN's conditioning."""

    def __init__(self, channels: int, embed_dim: int = CBN_EMBED) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(
            embed_dim, channels, bias=False
        )  # N(0, init_std) like every linear layer: gains start near 1
        self.bias = nn.Linear(embed_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        gain, bias = 1 + self.gain(embedding), self.bias(embedding)
        return self.bn(x) * gain[:, :, None, None].to(x.dtype) + bias[:, :, None, None].to(x.dtype)


class ConditionalSequential(nn.Sequential):
    """nn.Sequential that hands the class embedding to its ConditionalBatchNorm2d layers."""

    def forward(self, x: torch.Tensor, embedding: Optional[torch.Tensor] = None) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, embedding) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
        return x
