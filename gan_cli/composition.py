"""Composing a command's config before Hydra starts, as Hydra will: the pre-check's one composition, the values of a
sweep to check, and the overrides gan refuses (a key nothing reads, a key removed) with one paragraph each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from gan_cli.config import GROUPS, config_dir, register_schemas
from gan_cli.errors import GanError

register_schemas()  # the typed schemas every composition (here and in the Hydra apps) starts from
CONF = str(config_dir())


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def schema_keys(command: str) -> list[str]:
    """Every option key of `gan <command>` (dotted), from its typed schema."""
    from gan_cli.config import COMMAND_SCHEMAS
    from gan_cli.rundir import flatten

    return list(flatten(OmegaConf.to_container(OmegaConf.structured(COMMAND_SCHEMAS[command]))))  # type: ignore[arg-type]


def explain_config_error(exc: Exception) -> str:
    """Hydra/OmegaConf's multi-line composition error as one paragraph, without the search-path dump."""
    text = str(exc)
    if exc.__cause__ is not None and str(exc.__cause__) not in text:
        text += "\n" + str(exc.__cause__)
    text = text.split("Config search path:")[0]
    parts: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("reference_type=", "object_type=")):
            continue
        if (
            parts and line.isidentifier() and parts[-1].endswith((":", ","))
        ):  # an option listed under "Available options"
            parts[-1] += f" {line},"
        else:
            parts.append(line if line.endswith((".", ":", ",")) else line + ".")
    return " ".join(parts).rstrip(",") + ("." if parts and parts[-1].endswith(",") else "")


def hydra_parser(command: str):
    """Hydra's own argument parser (the one `hydra.main` reads sys.argv with), named `gan <command>` in its messages."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.prog = f"gan {command}"
    return parser


def split_arguments(command: str, args: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags, the overrides), read by Hydra's own parser wherever each stands (`model=x --cfg job y=1`: argparse
    alone takes the overrides after a flag's value for unknown arguments). Each flag comes back as one token, `--name`
    or `--name=value`, so `[*flags, *overrides]` is what Hydra reads the same way and a token starting with '-' is a
    flag. A wrong flag ends here with argparse's usage message and exit 2, as it would in Hydra."""
    parser = hydra_parser(command)
    parsed = parser.parse_intermixed_args(args)
    flags = []
    for action in parser._actions:
        value = getattr(parsed, action.dest, None)
        if not action.option_strings or value is None or value == action.default:
            continue
        name = next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
        flags.append(name if value is True else f"{name}={value}")
    return flags, list(parsed.overrides)


def _flag_value(flags: list[str], name: str):
    """The value of `--name=value` among normalized flags (True for a flag without a value), None when absent."""
    for flag in flags:
        if flag == name:
            return True
        if flag.startswith(f"{name}="):
            return flag.split("=", 1)[1]
    return None


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs of a sweep as Hydra's basic sweeper makes them (`report.planned.basic_sweep`). A search interval
    (Optuna's) has no values to list before the search runs."""
    from hydra.core.override_parser.types import IntervalSweep

    from gan_cli.report.planned import basic_sweep

    parsed = parse_overrides(overrides)
    for arg, o in zip(overrides, parsed):
        if o.is_sweep_override() and isinstance(o.value(), IntervalSweep):
            raise GanError(
                f"{arg!r} is searched by the sweeper (hydra/sweeper=optuna), whose values are chosen while it runs: "
                f"there is no job to show yet. Give {o.input_line.split('=', 1)[0]} one value to see a config with it."
            )
    return basic_sweep(list(zip(overrides, parsed)))


def _case_values(o) -> list:
    """The values of one override to check: [None] when it sweeps nothing; both ends of a search interval
    (`interval(1e-5, 1e-3)`, which only a search sweeper such as Optuna samples from)."""
    from hydra.core.override_parser.types import IntervalSweep

    if not o.is_sweep_override():
        return [None]
    value = o.value()
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    return list(o.sweep_string_iterator())


def parse_overrides(args: list[str]) -> list:
    """Hydra's reading of the overrides; one that does not parse is the user's input, said in one paragraph."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(args)
    except Exception as exc:
        raise GanError(next(filter(None, map(non_ascii_override, args)), None) or explain_config_error(exc)) from exc


def _parses(arg: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        OverridesParser.create().parse_overrides([arg])
    except Exception:
        return False
    return True


def non_ascii_override(arg: str) -> str | None:
    """Why Hydra's lexer stops at `arg` when a character outside ASCII is the cause (its bare 'token recognition
    error' names neither), with the form it reads: full-width digits and letters (an East Asian input method types
    them) have an ASCII twin; any other letter reads only inside quotes. None when `arg` parses or is plain ASCII."""
    import shlex
    import unicodedata

    odd = [c for c in dict.fromkeys(arg) if not c.isascii()]
    if not odd or _parses(arg):
        return None
    named = ", ".join(f"{c!r} ({unicodedata.name(c, f'U+{ord(c):04X}')})" for c in odd[:3])
    kind = "digits" if all(unicodedata.digit(c, None) is not None for c in odd) else "characters"
    twin = unicodedata.normalize("NFKC", arg)  # full-width forms -> their ASCII twins
    if twin.isascii() and _parses(twin):
        return (
            f"The override {arg!r} holds non-ASCII {kind} ({named}), which Hydra's override grammar does not read: "
            f"type it in ASCII, {twin}."
        )
    key, sep, value = arg.partition("=")
    quoted = shlex.quote(f"{key}={chr(34)}{value}{chr(34)}") if sep else ""
    return (
        f"The override {arg!r} holds non-ASCII {kind} ({named}), which Hydra's override grammar reads only inside "
        f"quotes{': write ' + quoted if quoted else ''}."
    )


def sweep_cases(args: list[str]) -> list[list[str]]:
    """One override list per value of each swept key (the others at their first value): composing each finds a
    bad value anywhere in a sweep, in as many compositions as there are values, not as many as there are jobs."""

    parsed = parse_overrides(args)
    values = [_case_values(o) for o in parsed]
    first = [
        arg if vals == [None] else f"{o.input_line.split('=', 1)[0]}={vals[0]}"
        for arg, o, vals in zip(args, parsed, values)
    ]
    cases = [first]
    for i, (o, vals) in enumerate(zip(parsed, values)):
        for v in vals[1:]:
            cases.append([*first[:i], f"{o.input_line.split('=', 1)[0]}={v}", *first[i + 1 :]])
    return cases


def refuse_added_keys(command: str, args: list[str]) -> None:
    """`+foo=1` or `++train.stepz=10` would add a key that nothing reads, and the run would quietly ignore it.
    Every option gan has is already in its config, so `+` is only for selecting a config group (`+experiment=ring8`)."""
    import difflib

    parsed = parse_overrides(args)
    known = schema_keys(command)
    for o in parsed:
        key = o.key_or_group
        user_args = any(key.startswith(f"{group}.args.") for group in GROUPS)  # a _target_'s own keywords
        if (
            not (o.is_add() or o.is_force_add())
            or key in known
            or user_args
            or key.startswith("hydra")
            or Path(CONF, key).is_dir()
        ):
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = (
            f" Did you mean {close[0]}?"
            if close
            else f" The options of gan {command} are listed by `gan {command} --cfg job`."
        )
        raise GanError(
            f"{o.input_line!r} adds the key {key!r}, which gan {command} does not have: nothing would read it. "
            f"Every option already exists, so set it without '+' (key=value); '+' only selects a config group, as in +experiment=ring8, "
            f"or adds a keyword of your own component, as in +model.args.hidden=128.{hint}"
        )


def _off_hint(command: str, key: str) -> str:
    """How to switch the option `key` off by setting it, from its type in the schema."""
    import dataclasses
    import typing
    from enum import Enum

    from gan_cli.config import COMMAND_SCHEMAS

    kind: Any = COMMAND_SCHEMAS[command]
    for part in key.split("."):
        if not dataclasses.is_dataclass(kind):
            return ""
        kind = typing.get_type_hints(kind).get(part)
        if kind is None:
            return ""
    if dataclasses.is_dataclass(kind):
        return f" Set the keys under {key} one by one instead (gan {command} --cfg job lists them)."
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    optional = typing.get_origin(kind) is typing.Union and type(None) in typing.get_args(kind)
    base = args[0] if optional and len(args) == 1 else kind
    if isinstance(base, type) and issubclass(base, Enum):
        values = [m.value for m in base]
        off = next((v for v in ("none", "off", "constant") if v in values), None)
        if off:
            return f" To switch it off, set {key}={off} (its values: {', '.join(values)})."
        return f" Set it to another of its values instead: {', '.join(f'{key}={v}' for v in values)}."
    if optional:
        return f" To switch it off, set {key}=null."
    if base is bool:
        return f" To switch it off, set {key}=false."
    if base in (int, float):
        return f" Set a value instead: for an option that counts or weighs a feature, {key}=0 switches it off."
    return f" Set it to another value instead (gan {command} --help lists the options)."


def refuse_deleted_keys(command: str, args: list[str]) -> None:
    """`~model.d_norm` would remove an option every run reads (the schema refuses it with "does not support deletion"):
    an option is switched off by a value, never removed."""

    parsed = parse_overrides(args)
    known = schema_keys(command)
    for o in parsed:
        key = o.key_or_group
        if not o.is_delete():
            continue
        if key in GROUPS:
            raise GanError(
                f"{o.input_line!r} would remove the {key} group, and every run needs a {key}: pick another one with "
                f"{key}=NAME instead (gan {command} --help lists them)."
            )
        if key in known or any(k.startswith(f"{key}.") for k in known):
            raise GanError(
                f"{o.input_line!r} would remove the key {key!r}, and the keys of gan {command} cannot be removed: every run "
                f"reads them all.{_off_hint(command, key)}"
            )


RUN_FLAGS = ("--multirun", "-m", "--config-name=", "--config-dir=")  # flags a run or sweep carries; others show


def runs(flags: list[str]) -> bool:
    """Whether Hydra's flags (single tokens, see split_arguments) leave a run to do (not --cfg, --info, --help ...)."""
    return all(f.startswith(RUN_FLAGS[2:]) or f in RUN_FLAGS[:2] for f in flags)


def searchpath_dirs(args: list[str]) -> list[Path]:
    """The folders of the `hydra.searchpath=[file://...]` override among `args` (what --config-dir became)."""
    found = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.searchpath=")), "[]")
    return [
        Path(p.strip().removeprefix("file://")) for p in found.strip("[]").split(",") if p.strip().startswith("file://")
    ]


def primary_config(command: str, args: list[str]) -> tuple[str, Path]:
    """(name, folder) of the primary config `args` compose: `--config-name=NAME` (gan's own `train` when absent) in
    the user's --config-dir folders first, then in gan's conf/; a name found nowhere is one paragraph."""
    name = next((a.split("=", 1)[1] for a in args if a.startswith("--config-name=")), command)
    dirs = searchpath_dirs(args)
    for folder in [*dirs, Path(CONF)] if name != command else [Path(CONF)]:
        if (folder / f"{name}.yaml").is_file():
            return name, folder
    looked = ", ".join(repr(str(d)) for d in dirs) or "none given"
    raise GanError(
        f"--config-name {name}: no {name}.yaml in your --config-dir folders ({looked}) nor in gan's conf/. A primary config "
        f"of your own sits at the top of a --config-dir folder and builds on gan's: its defaults list starts with "
        f"`- train` and then `- _self_`, and its keys override train.yaml's."
    )


SEED_MAX = 2**63 - 1  # torch's generators take 64 bits, and the data order's seed is derived from it (data/batching)


def refuse_bad_values(command: str, cfg: Any) -> None:
    """A NaN in any option (it compares false with every bound, so each option's own range check let it through and
    torch failed on it deep inside), and a seed outside 0..2^63-1 (torch's generators overflowed): one paragraph
    naming the key, the value and what is allowed, before anything is built. A user's component's own keywords
    (`<group>.args.*`) are its data and are left alone."""
    import math

    from gan_cli.config import command_defaults, train_defaults
    from gan_cli.rundir import flatten

    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)  # type: ignore[union-attr]
    defaults = train_defaults() if command == "train" else command_defaults(command)
    default_of = flatten(OmegaConf.to_container(defaults))  # type: ignore[arg-type]
    for key, value in flatten(plain).items():  # type: ignore[arg-type]
        values = value if isinstance(value, list) else [value]
        if ".args." in f".{key}.":
            continue
        if any(isinstance(v, float) and math.isnan(v) for v in values):
            default = default_of.get(key)
            example = f", e.g. its default {key}={default}" if isinstance(default, (int, float, list)) else ""
            what = "finite numbers" if isinstance(value, list) else "a finite number"
            raise GanError(
                f"{key}={value} is not a number (NaN), and no option of gan {command} takes one: give {key} {what}"
                f"{example}."
            )
        if key.rsplit(".", 1)[-1] in ("seed", "seeds") and any(
            isinstance(v, int) and not 0 <= v <= SEED_MAX for v in values
        ):
            raise GanError(
                f"{key}={value} is out of range: a seed is a whole number from 0 to 2^63 - 1 ({SEED_MAX}), "
                f"e.g. {key}={'[0,1]' if isinstance(value, list) else 0}."
            )


def refuse_group_paths(args: list[str]) -> None:
    """`model=../base/model` names a YAML file by a path out of its group's folder, and Hydra composes it (here gan's
    base defaults with the model's name missing, which failed deep inside the run): a group's option is the name of
    one of the group's own files. A sweep's values are each looked at; Hydra's own groups (hydra/...) are Hydra's."""
    folders = [*searchpath_dirs(args), Path(CONF)]
    for arg in args:
        key = override_key(arg)
        if "=" not in arg or key.startswith("hydra") or not any((f / key).is_dir() for f in folders):
            continue
        for value in arg.split("=", 1)[1].split(","):  # model=dcgan,../x sweeps two values
            value = value.strip().strip("'\"")
            if value.startswith("/") or ".." in value.replace("\\", "/").split("/"):
                options = sorted({y.stem for f in folders if (f / key).is_dir() for y in (f / key).glob("*.yaml")})
                raise GanError(
                    f"{key}={value} is a path out of the {key} group's folder: a {key} option is the name of one of "
                    f"its YAML files, never a path. Allowed: {', '.join(options)} (your own from a --config-dir's "
                    f"{key}/ folder, e.g. gan train --config-dir my_conf {key}=mine)."
                )


def compose_config(command: str, args: list[str], with_hydra: bool = False):
    """The config Hydra will compose for `gan <command> args` (its `hydra` node too when asked); errors as GanError.
    Hydra's flags among `args` are left out, but for `--config-name=NAME`: a primary config of the user's, composed
    from its folder with gan's conf/ on the search path after the user's folders."""
    from hydra import compose, initialize_config_dir

    name, folder = primary_config(command, args)
    args = [a for a in args if not a.startswith("-")]
    refuse_group_paths(args)
    if name != command:
        paths = ",".join(f"file://{d}" for d in [*searchpath_dirs(args), Path(CONF)])
        args = [*(a for a in args if not a.startswith("hydra.searchpath=")), f"hydra.searchpath=[{paths}]"]
    try:
        with initialize_config_dir(config_dir=str(folder), version_base="1.3", job_name=f"gan_{command}"):
            overrides = [
                a for a in args if with_hydra or not a.startswith("hydra.") or a.startswith("hydra.searchpath=")
            ]
            cfg = compose(config_name=name, overrides=overrides, return_hydra_config=with_hydra)
    except Exception as exc:  # any composition error is the user's input
        message = explain_config_error(exc)
        if "Could not find 'hydra/launcher/" in message or "Could not find 'hydra/sweeper/" in message:
            message += (
                " Launchers and sweepers are Hydra plugins: joblib and optuna come with `make install` (pip install 'gan-cli[sweep]'); "
                "others install as their own package, e.g. hydra-submitit-launcher."
            )
        raise GanError(message) from exc
    if name != command and command == "train" and "train" not in cfg:
        raise GanError(
            f"--config-name {name}: {folder / (name + '.yaml')} does not build on gan's {command}.yaml, so the run would miss "
            f"every option of gan {command}. Start its defaults list with `- {command}` and then `- _self_`."
        )
    return cfg
