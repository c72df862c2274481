"""A run's options checked and its parts built: every option is checked by building what it configures, before
the run directory's checkpoints/ is touched, so a rejected run leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gan_cli.components import Component
from gan_cli.config import Penalty, base_values, train_defaults, values_of
from gan_cli.contracts import check_models
from gan_cli.data import DataSpec, load_dataset
from gan_cli.data.clusters import with_training_labels
from gan_cli.data.datasets import planned_spec
from gan_cli.data.image_folder import check_image_folder_options
from gan_cli.errors import GanError, blame, io_failure, is_out_of_memory
from gan_cli.logs import CONSOLE
from gan_cli.losses import GanLoss, build_loss
from gan_cli.models import EMA, build_models, model_label, resolve_cond, sample_latent
from gan_cli.models.layers import batch_coupled
from gan_cli.optimizers import build_optimizers
from gan_cli.parallel import (
    SINGLE,
    DistributedD,
    World,
    backend_for,
    join,
    local_batch,
    shard_device,
    sync_batch_norm,
    wrap,
)
from gan_cli.rundir import (
    remove_stale_temp_files,
)
from gan_cli.runtime import pick_device, seed_everything, set_threads
from gan_cli.schedules import build_schedulers
from gan_cli.training.augment import DiffAugment, parse_policy
from gan_cli.training.growth import check_growth_run, growth_of
from gan_cli.training.pyramid import check_pyramid_run
from gan_cli.training.sizes import check_latent_size, models_too_large
from gan_cli.training.speed import Precision, enable_backend_speedups, plan_speed, prepare_models
from gan_cli.training.state import TrainingState
from gan_cli.training.tracking import components_of, registries

log = logging.getLogger(__name__)


MAX_STEPS = 10**9  # a billion generator steps: days at the fastest; anything larger is a typo


@dataclasses.dataclass
class Parts:
    """What one run is built of, as its options configure it (before speed paths, DDP and the state around them)."""

    G: nn.Module
    D: nn.Module
    loss: GanLoss
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: Any
    sched_d: Any
    augment: Optional[DiffAugment]
    ema: Optional[EMA]


def _check_without_data(cfg: DictConfig, is_image: bool, world_size: int = 1) -> tuple[GanLoss, Optional[DiffAugment]]:
    """The options that need no data shape: the model's run-wide limits, the objective, DiffAugment's policy."""
    check_pyramid_run(cfg, world_size)
    check_growth_run(cfg, world_size)
    return build_loss(cfg.loss), build_augment(cfg.train.augment, is_image)


def build_parts(cfg: DictConfig, spec: DataSpec, device: torch.device, world_size: int = 1) -> Parts:
    """Every part of a run built from its options, in one order, by the one function both the CLI's pre-check and the
    run call: an option is validated by the code that builds it. Only the models' initialisation draws from the
    global random stream (the contract probe has a stream of its own)."""
    loss, augment = _check_without_data(cfg, spec.is_image, world_size)
    check_latent_size(cfg, spec, device)
    try:
        G, D = build_models(cfg.model, spec, base_values("model"))  # the keys it does not read keep their defaults
        G.to(device)
        D.to(device)
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise models_too_large(cfg.model, spec, exc) from exc
    check_models(G, D, spec, cfg.model.pack, model_label(cfg.model))
    check_d_pass(cfg.train.d_pass, D)
    loss.extra.check_fits(D)
    opt_g, opt_d = build_optimizers(cfg.optimizer, G, D)
    sched_g, sched_d = build_schedulers(cfg.optimizer, cfg.train.steps, opt_g, opt_d)
    ema = EMA(G, cfg.model.ema, cfg.model.ema_warmup) if cfg.model.ema != 0 else None  # refuses a decay outside (0, 1)
    return Parts(G, D, loss, opt_g, opt_d, sched_g, sched_d, augment, ema)


def auto_conditioning(model: str, spec: DataSpec) -> str:
    """What model.cond=auto became for this data, in words."""
    cond = resolve_cond("auto", spec, model)
    if cond == "none":
        return "G and D are unconditional (the data has no labels)"
    what = "k-means clusters" if getattr(spec, "labels", "classes") == "clusters" else "classes"
    return f"G and D are class-conditional (model.cond={cond}) on the {spec.num_classes} {what}"


def check_options(cfg: DictConfig) -> None:
    """Every option that can be checked before the data is read, checked by building the run's parts on the CPU: the
    CLI calls this before Hydra makes a run directory, so a rejected command leaves nothing behind. The parts are
    dropped; the run builds its own on its device."""
    check_train_settings(cfg.train)
    check_dist(cfg.dist, cfg.train.batch_size)
    spec = planned_spec(cfg.dataset)
    if spec is None:  # image_folder: its shape and classes are known once the folder is read
        check_image_folder_options(cfg.dataset)  # but a missing dataset.path is known now
        _check_without_data(cfg, is_image=True)
        return
    build_parts(cfg, spec, torch.device("cpu"))


@dataclasses.dataclass(frozen=True)
class Ignored:
    """An option the user set that this run does not read: `text` says which and why, in one sentence. `refuse`: a
    single run stops on it; an option only a later command reads (eval.* without scores during training) warns."""

    key: str
    text: str
    refuse: bool = True


def ignored_options(cfg: DictConfig, typed: Sequence[str]) -> list[Ignored]:
    """The options among `typed` (the dotted keys the user set on the command line; a preset's own keys are never
    in it) that the composed run `cfg` does not read, away from their defaults: training with or without them gives
    the same weights, bit for bit. Which keys a group's option reads is its registry entry's `uses`; a few keys
    matter only beside another option (a penalty's weight, ACGAN's and InfoGAN's heads, scores during training)."""
    chosen = components_of(cfg)
    defaults = train_defaults()
    found: list[Ignored] = []
    for key in dict.fromkeys(k for k in typed if "." in k):
        group, sub = key.split(".")[0], key.split(".")[1]
        if group not in chosen and group != "eval":
            continue
        shown = f"{group}.{sub}={_shown(cfg[group][sub])}"
        default = None if OmegaConf.is_missing(defaults[group], sub) else defaults[group][sub]  # a selector: none
        if sub != "args" and cfg[group][sub] == default:
            continue  # the default: the run is the same with or without it
        why = _why_unread(cfg, group, sub, chosen)
        if why:
            found.append(Ignored(f"{group}.{sub}", f"{shown} does nothing in this run: {why}", group != "eval"))
    return list({i.key: i for i in found}.values())


def _shown(value: Any) -> str:
    return str(OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)


def _why_unread(cfg: DictConfig, group: str, sub: str, chosen: dict[str, Component]) -> str:
    """Why key `group.sub` does nothing in the run `cfg`; empty when the run reads it."""
    if group == "eval":
        if cfg.eval.every > 0 or sub in ("every", "best"):  # gan report ranks runs by eval.best, scored now or later
            return ""
        return (
            "eval.every=0 scores nothing during training (set eval.every=N to score every N steps; "
            "gan eval ckpt=... scores a checkpoint with its own options)."
        )
    component, key = chosen[group], registries()[group].selector
    selector = f"{group}{'' if key == 'name' else '.' + key}={cfg[group][key]}"  # model=mlp, loss.objective=hinge
    if sub not in component.uses:
        reads = ", ".join(f"{group}.{k}" for k in component.uses if k != key)
        if sub == "args" and component.target is None:
            return f"{group}.args holds the keywords of your own component ({group}._target_), and {selector} is built in: it takes none."
        owner = f"your {component.target}" if component.target else selector
        return f"{owner} does not read {group}.{sub}; it reads {reads}."
    model_is_builtin = chosen["model"].target is None
    if group == "loss" and sub in ("penalty_weight", "penalty_every") and cfg.loss.penalty == "none":
        return f"loss.penalty=none, so there is no penalty to {'weigh' if sub == 'penalty_weight' else 'space out'} (choose one: {' | '.join(f'loss.penalty={p}' for p in values_of(Penalty) if p != 'none')})."
    if group == "loss" and sub in ("aux_weight", "aux_on_fake") and model_is_builtin and cfg.model.cond != "acgan":
        return f"it sets ACGAN's auxiliary classifier loss, which only model.cond=acgan has (now model.cond={cfg.model.cond})."
    if (
        group == "loss"
        and sub in ("info_weight", "info_schedule")
        and model_is_builtin
        and not (cfg.model.info_cat or cfg.model.info_cont)
    ):
        return "it sets InfoGAN's mutual-information term, which needs latent codes (model.info_cat=K or model.info_cont=N; now both 0)."
    return ""


def check_train_settings(cfg) -> None:
    for key in ("steps", "batch_size", "log_every", "sample_every", "ckpt_every", "n_samples"):
        if cfg[key] < 1:
            raise GanError(f"train.{key}={cfg[key]} must be a positive integer.")
    for key in ("steps", "log_every", "sample_every", "ckpt_every"):
        if cfg[key] > MAX_STEPS:
            raise GanError(
                f"train.{key}={str(cfg[key])[:20]}{'...' if len(str(cfg[key])) > 20 else ''} is more than {MAX_STEPS:,} steps; give a number of steps up to that."
            )
    if cfg.num_workers < 0:
        raise GanError(f"train.num_workers={cfg.num_workers} must be >= 0.")
    if cfg.keep_ckpts is not None and cfg.keep_ckpts < 0:
        raise GanError(
            f"train.keep_ckpts={cfg.keep_ckpts} must be a number of step checkpoints to keep (the newest; 0 = none) "
            "or null (keep all)."
        )
    if cfg.threads is not None and cfg.threads < 1:
        raise GanError(f"train.threads={cfg.threads} must be a positive number of threads, or null (chosen for you).")


def check_d_pass(d_pass: str, D: nn.Module) -> None:
    """train.d_pass=joint gives the logits of two passes only if D scores each sample on its own."""
    coupled = batch_coupled(D) if d_pass == "joint" else []
    if coupled:
        raise GanError(
            f"train.d_pass=joint scores [real; fake] in one pass of D, which equals two passes only when D scores each sample on "
            f"its own; this D has {', '.join(coupled)}, whose output for a sample depends on the rest of its batch "
            f"(model.d_norm=batch, model.minibatch=mbdisc|mbstd, model=progan's minibatch std-dev). Use train.d_pass=separate, "
            f"or a per-sample D (model.d_norm=layer|spectral|none, model.minibatch=none)."
        )


def check_dist(cfg, batch_size: int) -> None:
    if cfg.nproc_per_node < 1:
        raise GanError(
            f"dist.nproc_per_node={cfg.nproc_per_node} must be a positive number of processes (1 = one process, N = one per GPU)."
        )
    if not cfg.timeout > 0:
        raise GanError(f"dist.timeout={cfg.timeout} must be a positive number of seconds.")
    local_batch(batch_size, World(size=int(cfg.nproc_per_node)))


def check_writable(run_dir: Path) -> None:
    """Write and delete a probe file in the run directory and in checkpoints/ now, not at the first save an hour in."""
    for folder in (run_dir, run_dir / "checkpoints"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write_test.{os.getpid()}"
            probe.write_bytes(b"gan")
            probe.unlink()
        except OSError as err:
            raise io_failure(
                err, f"Writing to {str(folder)!r}", "Pick a writable folder (hydra.run.dir=...) or fix this one."
            ) from err


def set_up(cfg: DictConfig, run_dir: Path, parallel_jobs: int, world: World = SINGLE):
    """(data, training state, the models the step runs (compiled, wrapped in DDP, or as built), DiffAugment, the speed plan):
    every option is built, and so checked, before the run directory's checkpoints/ is touched."""
    device = shard_device(world, pick_device(cfg.device))
    _, why = set_threads(cfg.train.threads, parallel_jobs * world.local_size)
    if world.distributed:
        local_batch(cfg.train.batch_size, world)
        join(world, backend_for(str(cfg.dist.backend), device), float(cfg.dist.timeout))
    seed_everything(cfg.seed)  # the same stream on every rank: per_sample cuts the global draws into shards
    data = with_training_labels(
        load_dataset(cfg.dataset, cfg.seed),
        str(cfg.dataset.labels),
        int(cfg.dataset.clusters),
        conditional=str(cfg.model.cond) != "none",
        seed=cfg.seed,
        num_workers=cfg.train.num_workers,
    )
    if cfg.train.batch_size > len(data):  # also keeps a mistyped batch of 10^11 from paging memory in for minutes
        raise GanError(
            f"train.batch_size={cfg.train.batch_size} is larger than the dataset ({len(data):,} examples): every batch would hold "
            f"some examples twice. Lower train.batch_size, or use more data (dataset.limit; dataset.n for the toys)."
        )
    parts = build_parts(cfg, data.spec, device, world.size)  # image_folder's shape is known only now
    if data.stream is not None and str(cfg.model.get("cond")) == "auto":  # what image_folder's layout made of G and D
        log.info("model.cond=auto: %s", auto_conditioning(cfg.model.name, data.spec), extra=CONSOLE)
    G, D, loss, ema = parts.G, parts.D, parts.loss, parts.ema
    plan = plan_speed(cfg.train, device, data.spec.is_image, data.x.nbytes if data.x is not None else 0)
    if plan.compile and (world.distributed or growth_of(cfg, G)):
        plan = dataclasses.replace(plan, compile=False)  # DDP's gradient hooks, a G whose graph changes every step
    enable_backend_speedups(device)
    runners = prepare_models(G, D, plan)
    if plan.channels_last and ema is not None:  # the average follows G's memory layout
        ema.module.to(memory_format=torch.channels_last)
    amp = Precision(plan.amp, device)
    log.info("speed paths: %s threads=%d (%s)", plan.describe(), torch.get_num_threads(), why, extra=CONSOLE)
    warn_penalty_with_batch_norm(cfg, loss, D)
    # after the EMA's copy, which measures its BatchNorm statistics on rank 0 alone, so must not sync
    if world.distributed:
        G, D, runners = distribute(cfg, G, D, device, world)
    # every option is checked by now: only a run that can start touches checkpoints/
    stale = []
    if world.main:
        check_writable(run_dir)
        stale = remove_stale_temp_files(run_dir)  # safe: this process holds the run directory's lock
    if stale:
        log.info("removed %d temp file(s) a killed checkpoint write left in %s", len(stale), run_dir / "checkpoints")
    try:
        fixed_z = sample_latent(G, cfg.train.n_samples, device)
    except (RuntimeError, MemoryError) as exc:
        blame(exc, f"train.n_samples (now {cfg.train.n_samples:,}, the fixed noise behind the progress grids)")
        raise
    state = TrainingState(G, D, ema, parts.opt_g, parts.opt_d, parts.sched_g, parts.sched_d, amp, loss, fixed_z, device)
    return data, state, runners, parts.augment, plan


def warn_penalty_with_batch_norm(cfg: DictConfig, loss, D: nn.Module) -> None:
    """A gradient penalty takes each sample's gradient, which BatchNorm in D mixes across the batch: said, not refused."""
    if loss.penalty is not None and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules()):
        log.warning(
            "loss.penalty=%s with BatchNorm in D: the penalty assumes per-sample outputs; consider %s",
            cfg.loss.penalty,
            "model.d_norm=layer"
            if cfg.model.get("_target_") is None
            else f"a D without BatchNorm in your {cfg.model._target_} (LayerNorm, or none)",
        )


def distribute(cfg: DictConfig, G: nn.Module, D: nn.Module, device: torch.device, world: World):
    """(G, D, the runners the step calls) for a run on several processes: SyncBatchNorm where asked, G in DDP, D in
    the wrapper that runs its passes through DDP. The same weight tensors: the optimizers keep them."""
    (G, D), sync_bn = sync_batch_norm(str(cfg.dist.sync_bn), (G, D), device, world)
    log.info(
        "distributed: %d processes (%s), %d samples per process, sync_bn %s",
        world.size,
        backend_for(str(cfg.dist.backend), device),
        cfg.train.batch_size // world.size,
        sync_bn,
        extra=CONSOLE,
    )
    return G, D, (wrap(G, device), DistributedD(D, device))


def build_augment(policy: list[str], is_image: bool) -> Optional[DiffAugment]:
    ops = parse_policy(",".join(policy))
    if not ops:
        return None
    if not is_image:
        raise GanError(
            f"train.augment=[{','.join(policy)}] augments images (DiffAugment), but this dataset holds points. Use train.augment=[]."
        )
    return DiffAugment(ops)
