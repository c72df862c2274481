"""`gan train`'s argument pipeline, before Hydra starts: `--config-dir` as a search path, `resume=RUN` as the run's own
overrides, torchrun's ranks in rank 0's directory, the pre-check that composes the config and builds the run's parts
(so a bad option is one paragraph and exit 2 with no run directory made), and an Optuna search's direction.

`prepare(command, args)` is the one call the dispatcher makes; it returns the arguments Hydra is then given.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf

from gan_cli.composition import (
    CONF,
    compose_config,
    override_key,
    primary_config,
    refuse_added_keys,
    refuse_bad_values,
    refuse_deleted_keys,
    runs,
    schema_keys,
    split_arguments,
    sweep_cases,
    sweep_jobs,
)
from gan_cli.config import GROUPS
from gan_cli.errors import GanError
from gan_cli.rundir import saved_searchpath
from gan_cli.saved_overrides import (
    check_hydra_unchanged,
    check_saved_config_name,
    check_saved_overrides,
    check_saved_searchpath,
    saved_config_name,
)


def prepare(command: str, args: list[str]) -> Optional[list[str]]:
    """The arguments to hand Hydra for `gan <command> args`, every check done; None when `--help` was answered here.

    Hydra's flags may stand anywhere (read by Hydra's own parser) and come back first, as single tokens, so that
    what gan adds to the overrides never lands after a flag's value."""
    if command == "train":
        args = config_dir_arguments(args)
    flags, overrides = split_arguments(command, args)
    args = [*flags, *overrides]
    if "--shell-completion" in flags or "--hydra-help" in flags:
        return args
    # with --cfg and --help too: Hydra would print OmegaConf's words instead. resume= is left to the resume pipeline,
    # which takes a pasted path with spaces as it is (resume_target) before Hydra's grammar reads it
    plain = [o for o in overrides if not o.startswith("resume=")]
    refuse_added_keys(command, plain)
    refuse_deleted_keys(command, plain)
    if command != "train":
        precheck(command, args)
        return args
    if any(a.split("=", 1)[0] == "resume" and resume_target(a) in ("", "''", '""') for a in overrides):
        raise GanError(
            "resume= is empty (an unset shell variable, as in resume=$RUN?), and an empty resume would start a new run. "
            "Name the run directory or checkpoint to continue (resume=outputs/DATE/TIME), or give resume=null for a new run."
        )
    multirun = "--multirun" in flags
    if "--help" in flags:
        from gan_cli.help import train_help

        print(train_help(compose_config(command, args, with_hydra=True)))
        return None
    if not multirun and any(a.startswith("resume=") for a in overrides):
        args = resume_arguments(args)
    args = torchrun_arguments(args, multirun)
    warnings = precheck(command, args, typed=overrides)
    check_output_dir(args, multirun)
    from gan_cli.parallel import process_rank

    if process_rank() == 0:  # the ranks of a torchrun run all check; one says it
        for text in warnings:
            print(f"gan: warning: {text}", file=sys.stderr)
    return flags_first(primary_dir(command, search_arguments(args) if multirun else args))


def primary_dir(command: str, args: list[str]) -> list[str]:
    """A primary config of the user's (`--config-name=NAME` from a --config-dir folder): Hydra looks for it only in its
    own --config-dir, so that folder is handed to Hydra as the flag too (hydra.searchpath still records it)."""
    name, folder = primary_config(command, args)
    return args if name == command else [f"--config-dir={folder}", *args]


def flags_first(args: list[str]) -> list[str]:
    """Hydra's flags (single tokens after `split_arguments`), then the overrides: how Hydra's parser reads them all."""
    return [*(a for a in args if a.startswith("-")), *(a for a in args if not a.startswith("-"))]


SHOWING = ("--cfg", "--info")


def shown_jobs(args: list[str]) -> Optional[list[tuple[str, list[str]]]]:
    """`gan train -m ... --cfg job` (or --info): Hydra refuses -m beside --cfg, and sweep values fail its composition;
    gan shows each job's config instead, as Hydra shows one run's. (a label naming the job's swept values, the
    arguments of one plain show) per job; None for any other command line."""
    flags = [a for a in args if a.startswith("-")]
    if "--multirun" not in flags or not any(f.split("=", 1)[0] in SHOWING for f in flags):
        return None
    overrides = [a for a in args if not a.startswith("-")]
    flags = [f for f in flags if f != "--multirun"]
    jobs = sweep_jobs(overrides)
    label = lambda job: " ".join(j for j, a in zip(job, overrides) if j != a)  # noqa: E731
    return [(label(job) if len(jobs) > 1 else "", [*flags, *job]) for job in jobs]


def check_output_dir(args: list[str], multirun: bool) -> None:
    """A new run never trains over an earlier one (`hydra.run.dir=` an existing run: resume it instead), and a sweep
    never writes its jobs into a sweep directory that is not empty. A resume names its own run's directory, and the
    ranks of a torchrun run had rank 0 check theirs (torchrun_arguments); `--cfg`, `--help` and the like write nothing."""
    from gan_cli.parallel import launched_world
    from gan_cli.rundir import refuse_used_run_dir, refuse_used_sweep_dir

    flags, plain = [a for a in args if a.startswith("-")], [a for a in args if not a.startswith("-")]
    if not runs(flags):
        return
    if multirun:
        cfg = compose_config("train", [*flags, *sweep_cases(plain)[0]], with_hydra=True)
        refuse_used_sweep_dir(Path(str(cfg.hydra.sweep.dir)))
        return
    world = launched_world()
    if not any(a.startswith("hydra.run.dir=") for a in plain) or (world is not None and world.distributed):
        return  # the default directory is named by time and process id: new
    cfg = compose_config("train", args, with_hydra=True)
    if not cfg.get("resume"):
        refuse_used_run_dir(Path(str(cfg.hydra.run.dir)))


def resume_target(arg: str) -> str:
    """The path in `resume=...`: the text as the shell passed it when such a file or folder exists (spaces and any
    letters allowed, as in the command printed after Ctrl-C), else the value Hydra's grammar reads (e.g. '...' quoted)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    raw = arg.split("=", 1)[1]
    try:
        if Path(os.path.expanduser(raw)).exists():
            return raw
    except OSError:  # too long to be a path: resolve_checkpoint says so
        return raw
    try:
        value = OverridesParser.create().parse_overrides([arg])[0].value()
    except Exception:  # not Hydra syntax either: the text is the path (resolve_checkpoint then says it does not exist)
        return raw
    return value if isinstance(value, str) else raw


CONFIG_DIR_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp")  # -cp too: gan's own conf/ stays on the path


def config_dir_arguments(args: list[str]) -> list[str]:
    """`--config-dir DIR` (or `-cd DIR`, `--config-dir=DIR`) -> the override `hydra.searchpath=[file://DIR]`.

    The same search path Hydra's flag would add, as an override: the pre-check composes with it, a sweep passes it
    to every job, and `.hydra/hydra.yaml` records it, so `gan train resume=RUN` finds the user's components again."""
    out, dirs, i = [], [], 0
    while i < len(args):
        a = args[i]
        if a in CONFIG_DIR_FLAGS:
            if i + 1 >= len(args):
                raise GanError(
                    f"{a} needs a folder: gan train {a} my_conf model=my_model (the folder holds model/my_model.yaml)."
                )
            dirs.append(args[i + 1])
            i += 2
            continue
        if a.startswith(("--config-dir=", "--config-path=")):
            dirs.append(a.split("=", 1)[1])
        else:
            out.append(a)
        i += 1
    for d in dirs:
        if not Path(os.path.expanduser(d)).is_dir():
            raise GanError(
                f"--config-dir {d!r} is not a folder. Point it at the folder that holds your model/, loss/, dataset/ or optimizer/ YAML files."
            )
    if not dirs:
        return args
    paths = ",".join(f"file://{Path(os.path.expanduser(d)).resolve()}" for d in dirs)
    return [*out, f"hydra.searchpath=[{paths}]"]


def torchrun_arguments(args: list[str], multirun: bool) -> list[str]:
    """`torchrun --nproc_per_node=N -m gan_cli train ...`: every rank trains in rank 0's run directory.

    Each of the N processes composes the config itself, and a run directory named by the time and process id would
    differ in each; so the ranks join the run's process group now, before Hydra starts, and take rank 0's name. Only
    rank 0's Hydra writes .hydra/ there."""
    from gan_cli.parallel import backend_for, broadcast_text, join, launched_world, shard_device
    from gan_cli.rundir import override
    from gan_cli.runtime import pick_device

    world = launched_world()
    if world is None or not world.distributed:
        return args
    if multirun:
        raise GanError(
            "torchrun starts one distributed run; a sweep (-m) runs its jobs through a Hydra launcher instead, e.g. "
            'gan train -m hydra/launcher=submitit_slurm hydra.launcher.tasks_per_node=8 ... (README "Many GPUs and clusters").'
        )
    cfg = compose_config("train", args, with_hydra=True)
    join(
        world,
        backend_for(str(cfg.dist.backend), shard_device(world, pick_device(str(cfg.device)))),
        float(cfg.dist.timeout),
    )
    chosen = next(
        (a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), None
    )  # resume=RUN names it for all
    run_dir = broadcast_text(chosen or str(cfg.hydra.run.dir))
    refusal = ""
    if world.main and chosen and not cfg.get("resume"):  # rank 0 looks once, before any rank's Hydra writes there
        from gan_cli.rundir import refuse_used_run_dir

        try:
            refuse_used_run_dir(Path(str(cfg.hydra.run.dir)))
        except GanError as err:
            refusal = str(err)
    refusal = broadcast_text(refusal)
    if refusal:
        raise GanError(refusal)
    extra = [] if chosen else [override("hydra.run.dir", run_dir)]
    return [*args, *extra, *([] if world.main else ["hydra.output_subdir=null"])]


def resume_arguments(args: list[str]) -> list[str]:
    """`gan train resume=RUN ...` -> the run's own overrides, then the new ones, in RUN itself.

    Hydra composes the same config the run was started with, the new overrides win, and the training
    code refuses any change other than length and cadence. Hydra writes nothing into RUN/.hydra
    (`hydra.output_subdir=null`): the original files stay as they were, and an accepted resume records
    its own under .hydra/resumes/.
    """
    from gan_cli.checkpoint import load_checkpoint, resolve_checkpoint, run_dir_of
    from gan_cli.rundir import override

    at = next(i for i, a in enumerate(args) if a.startswith("resume="))
    target = resume_target(args[at])
    if not target or target == "null":
        return args
    ckpt_path = resolve_checkpoint(target)
    run_dir = run_dir_of(ckpt_path)
    args = [*args[:at], override("resume", target), *args[at + 1 :]]
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if saved_file.is_file():
        try:
            saved, where = yaml.safe_load(saved_file.read_text()) or [], ".hydra/overrides.yaml"
        except yaml.YAMLError as exc:
            raise GanError(
                f"The run {str(run_dir)!r} has a .hydra/overrides.yaml that is not valid YAML ({str(exc).splitlines()[0]}); "
                "it cannot be resumed as it is."
            ) from None
    else:
        saved, where = load_checkpoint(ckpt_path)[0].get("overrides", []), "its checkpoint"
    saved = check_saved_overrides(saved, run_dir, where, schema_keys("train"), _selectable_groups())
    new_keys = {override_key(a) for a in args if "=" in a}
    kept = [o for o in saved if override_key(o) not in new_keys and override_key(o) != "resume"]
    searchpath = check_saved_searchpath(saved_searchpath(run_dir), run_dir)
    if searchpath and "hydra.searchpath" not in new_keys:  # the run's --config-dir: where its own components are
        kept.append(f"hydra.searchpath=[{','.join(searchpath)}]")
    name = saved_config_name(run_dir)
    if name is not None and name != "train" and not any(a.startswith("--config-name=") for a in args):
        # the run's own primary config (-cn), found on its saved search path
        kept.insert(0, f"--config-name={check_saved_config_name(name, run_dir)}")
    _check_saved_targets(kept, args, "hydra.searchpath" in new_keys, run_dir)
    return [*kept, *args, override("hydra.run.dir", str(run_dir)), "hydra.output_subdir=null"]


def _selectable_groups() -> list[str]:
    """The config groups a user selects (model=..., +experiment=...): gan's own folders of options, not Hydra's."""
    return [*GROUPS, *(p.name for p in Path(CONF).iterdir() if p.is_dir() and p.name not in ("hydra", "base", *GROUPS))]


def _check_saved_targets(kept: list[str], args: list[str], own_config_dir: bool, run_dir: Path) -> None:
    """A resume composes the run's config from what the run directory saved (its overrides, its --config-dir), and a
    run directory may come from anywhere: code it names (`_target_`) is imported only when this command vouches for it
    (its own --config-dir) or GAN_ALLOW_TARGETS allows it. A `_target_` set by a saved override needs the variable always;
    a saved `<group>.args.*` value is data and needs neither."""
    from gan_cli.components import check_checkpoint_targets

    own_args = [a for a in args if not a.startswith("-") or a.startswith("--config-")]
    own = compose_config("train", own_args, with_hydra=True)
    resumed = compose_config("train", [*kept, *own_args], with_hydra=True)
    check_hydra_unchanged(
        OmegaConf.to_container(own.hydra, resolve=False), OmegaConf.to_container(resumed.hydra, resolve=False), run_dir
    )  # type: ignore[arg-type]
    # a component's keywords (model.args.*) are data; only a _target_ (as a key, or inside a dict value) names code
    injected = [o for o in kept if "_target_" in o and not o.startswith("-")]
    if own_config_dir and not injected:
        return
    cfg = OmegaConf.to_container(resumed, resolve=False)
    cfg.pop("hydra", None)  # type: ignore[union-attr]
    check_checkpoint_targets(cfg, GROUPS, None, repr(str(run_dir)), resume=True)  # type: ignore[arg-type]


def check_resume(cfg: DictConfig) -> None:
    """Refuse a resume before Hydra starts, so a refused one leaves the run directory exactly as it was:
    a change to what is trained, a run already at its last step, or a run another process trains now."""
    from gan_cli.checkpoint import check_layout, load_checkpoint, run_dir_of
    from gan_cli.config import to_plain
    from gan_cli.rundir import check_lock_file, check_resumable, in_use, is_locked

    ckpt, path = load_checkpoint(cfg.resume)
    check_layout(ckpt, path, resume=True)
    check_resumable(ckpt, path, to_plain(cfg))
    check_lock_file(run_dir_of(path))
    holder = is_locked(run_dir_of(path))
    if holder is not None:
        raise in_use(run_dir_of(path), holder)


def precheck(command: str, args: list[str], typed: Sequence[str] = (), sweep: bool = False) -> list[str]:
    """Compose a single run's config before Hydra starts it, so a bad override gets a clear message and exit 2.

    `typed`: the overrides the user gave (not those a resume reads from its run). One that the run does not read is
    refused, or, in a sweep (where it may matter to other jobs) and for eval.* (which `gan eval` may read later),
    returned as a warning; each warning once."""
    flags = [a for a in args if a.startswith("-")]
    if flags and (command != "train" or not runs(flags)):
        return []  # --cfg, --info ... (and a sample or eval sweep): left to Hydra
    if "--multirun" in flags or "-m" in flags:
        said: dict[str, None] = {}
        named = [f for f in flags if f.startswith("--config-")]
        for one in sweep_cases([a for a in args if not a.startswith("-")]):
            said.update(dict.fromkeys(precheck(command, [*named, *one], typed, sweep=True)))
        return list(said)
    cfg = compose_config(command, args)
    refuse_bad_values(command, cfg)
    if command != "train":
        return []
    from gan_cli.training.setup import check_options, ignored_options

    check_options(cfg)  # before Hydra makes a run directory for a run that cannot start
    ignored = ignored_options(cfg, [override_key(a) for a in typed if "=" in a])
    refused = [i.text for i in ignored if i.refuse and not sweep]
    if refused:
        raise GanError(
            f"{' '.join(refused)} Leave {'it' if len(refused) == 1 else 'them'} out, or choose options that read "
            f"{'it' if len(refused) == 1 else 'them'}: gan train --help shows the keys each option reads."
        )
    if cfg.get("resume"):
        check_resume(cfg)
    return [i.text for i in ignored if not i.refuse or sweep]


SEARCH_DIRECTIONS = {"min": "minimize", "max": "maximize"}


def search_arguments(args: list[str]) -> list[str]:
    """`hydra/sweeper=optuna`: the search optimises what `gan train` returns, the last value of eval.best, so it
    needs scores during training and a named score; its direction (minimize/maximize) comes from the metric."""
    from gan_cli.metrics.scorer import NEAR_ONE, direction_of

    sweeper = next((a.split("=", 1)[1] for a in args if a.split("=", 1)[0].lstrip("+") == "hydra/sweeper"), None)
    if sweeper != "optuna":
        return args
    first = sweep_cases([a for a in args if not a.startswith("-")])[0]
    cfg = compose_config("train", [*(a for a in args if a.startswith("--config-")), *first])
    example = "e.g. eval.every=500 eval.best=fid5k_lenet (images) or eval.every=1000 eval.best=hq2.5k (ring8, grid25)"
    wrong = [
        *([f"set eval.every > 0 (now {cfg.eval.every})"] if cfg.eval.every <= 0 else []),
        *(["name the score to optimise with eval.best (now unset)"] if not cfg.eval.best else []),
    ]
    if wrong:
        raise GanError(
            f"hydra/sweeper=optuna searches for the options with the best score, and gan train returns a score only when it scores "
            f"during training: {' and '.join(wrong)}, {example}."
        )
    direction = direction_of(str(cfg.eval.best))
    if direction is None or direction == NEAR_ONE:
        why = (
            "is best at 1, which a search can neither minimise nor maximise"
            if direction == NEAR_ONE
            else "is not a score name gan reports"
        )
        raise GanError(f"eval.best={cfg.eval.best} {why}: name a score that is lower- or higher-is-better, {example}.")
    wanted = SEARCH_DIRECTIONS[direction]
    given = next((a.split("=", 1)[1] for a in args if a.split("=", 1)[0] == "hydra.sweeper.direction"), None)
    if given is None:
        return [*args, f"hydra.sweeper.direction={wanted}"]
    if given != wanted:
        raise GanError(
            f"hydra.sweeper.direction={given}, but {cfg.eval.best} is {direction[:3]}imised ({'lower' if direction == 'min' else 'higher'} is better): "
            f"drop hydra.sweeper.direction, gan sets it to {wanted}."
        )
    return args
