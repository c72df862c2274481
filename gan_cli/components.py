"""One registry per pluggable concept (architectures, objectives, optimizers, datasets), open to a user's own
components by `_target_`, and the rule that decides which `_target_` a checkpoint may make gan import.

A built-in option and a user's component travel the same path: `REGISTRY.of(cfg.model)` returns a `Component`
whose `build` has the group's one signature, either the registered built-in named by the group's selector key
(`model.name`, `loss.objective`, ...) or the user's `_target_` adapted to that signature. Error messages list
the registry's names, so they never go stale.

Importing is running code. A config the user composed names code they chose; a checkpoint's config may come
from anywhere, so what gan rebuilds from a checkpoint (`gan sample`, `gan eval`) imports a `_target_` only
under a module prefix the user allowed (`allow_targets=[my_pkg]` or `GAN_ALLOW_TARGETS=my_pkg`).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from gan_cli.errors import GanError, one_of

ALLOW_ENV = "GAN_ALLOW_TARGETS"


@dataclass(frozen=True)
class Component:
    """One option of a config group: what builds it and which of the group's keys it reads (shown by --help)."""

    name: str
    build: Callable[..., Any]
    uses: tuple[str, ...] = ()
    target: Optional[str] = None  # the user's `_target_`, None for a built-in


class Registry:
    """The options of one config group, by the name users type.

    `shared` are the group's keys every option reads; `target_uses` the ones a `_target_` component reads beyond
    them; `adapt` turns the user's callable into a build with the built-ins' signature."""

    def __init__(
        self,
        group: str,
        selector: str,
        shared: tuple[str, ...],
        target_uses: tuple[str, ...],
        adapt: Callable[[Callable[..., Any]], Callable[..., Any]],
    ) -> None:
        self.group, self.selector, self.shared, self.target_uses, self.adapt = (
            group,
            selector,
            shared,
            target_uses,
            adapt,
        )
        self._components: dict[str, Component] = {}

    def add(self, name: str, build: Callable[..., Any], uses: tuple[str, ...] = ()) -> None:
        if name in self._components:
            raise ValueError(f"{self.group} option {name!r} is registered twice")
        self._components[name] = Component(name, build, (*self.shared, *uses))

    def register(self, name: str, uses: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(build: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, build, uses)
            return build

        return decorate

    def names(self) -> list[str]:
        return list(self._components)

    def __contains__(self, name: object) -> bool:
        return name in self._components

    def __iter__(self) -> Iterator[str]:
        return iter(self._components)

    def get(self, name: str) -> Component:
        if name not in self._components:
            raise one_of(f"{self.group} option ({self.group}.{self.selector})", name, self.names())
        return self._components[name]

    def of(self, cfg: Any) -> Component:
        """The component `cfg` (a node of this group) selects: its `_target_` when set, else the built-in it names."""
        target = cfg.get("_target_") if hasattr(cfg, "get") else None
        name = str(cfg[self.selector])
        if not target:
            return self.get(name)
        if name in self._components:  # samples, scores and plots look some built-ins up by name: keep the names apart
            raise GanError(
                f"{self.group}.{self.selector}={name} names gan's built-in option, but {self.group}._target_={target!r} is your own component; "
                f"give it a name of its own (the built-ins are {', '.join(self.names())})."
            )
        return Component(
            name,
            self.adapt(import_target(str(target), f"{self.group}._target_")),
            (*self.shared, *self.target_uses),
            str(target),
        )


def target_args(cfg: Any) -> dict[str, Any]:
    """`<group>.args` as plain Python values (lists, dicts), the way a user's function expects its keywords."""
    from omegaconf import OmegaConf

    args = cfg.get("args") or {}
    return OmegaConf.to_container(args, resolve=True) if OmegaConf.is_config(args) else dict(args)  # type: ignore[return-value]


def import_target(path: str, key: str) -> Callable[..., Any]:
    """The callable `path` ('pkg.module.attr') names, imported from the Python path and the current directory
    (where a user keeps the package their `--config-dir` names, as `python -m` would find it)."""
    module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise GanError(
            f"{key}={path!r} is not a dotted path to a callable; write it as package.module.function (or .Class)."
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        found = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise GanError(
            f"{key}={path!r} cannot be imported: {exc}. Put the package on PYTHONPATH or in the directory gan runs from."
        ) from exc
    except AttributeError as exc:
        raise GanError(f"{key}={path!r}: module {module!r} has no {attr!r}.") from exc
    if not callable(found):
        raise GanError(f"{key}={path!r} is a {type(found).__name__}, not a function or class gan can call.")
    return found


def allowed_prefixes(given: Optional[Sequence[str]]) -> list[str]:
    """The module prefixes a checkpoint's `_target_` may come from: the command's allow_targets and $GAN_ALLOW_TARGETS."""
    from_env = [p.strip() for p in os.environ.get(ALLOW_ENV, "").replace(":", ",").split(",") if p.strip()]
    return [str(p) for p in (given or [])] + from_env


def targets_in(config: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every (key, `_target_` value) in a nested config, however deep."""
    if isinstance(config, dict):
        for key, value in config.items():
            full = f"{where}.{key}" if where else str(key)
            if key == "_target_" and value is not None:
                yield full, str(value)
            else:
                yield from targets_in(value, full)
    elif isinstance(config, (list, tuple)):
        for i, value in enumerate(config):
            yield from targets_in(value, f"{where}[{i}]")


def check_checkpoint_targets(
    config: dict[str, Any], groups: Sequence[str], allow: Optional[Sequence[str]], source: str, resume: bool = False
) -> None:
    """Refuse, before anything is imported, a checkpoint whose config names code outside what the user allowed.

    Prefixes match whole module names: allowing `my_pkg` admits `my_pkg.nets.build`, not `my_pkg_evil.x`."""
    prefixes = allowed_prefixes(allow)
    for group in groups:
        for key, target in targets_in(config.get(group), group):
            if not any(target == p or target.startswith(p + ".") for p in prefixes):
                module = target.rpartition(".")[0] or target
                way_out = (
                    f"To resume a run of your own, give its --config-dir again (gan train --config-dir DIR resume=...), or set {ALLOW_ENV}={module} "
                    f"if you trust where it came from."
                    if resume
                    else f"If you trust where this checkpoint came from, add allow_targets=[{module}] or set {ALLOW_ENV}={module}."
                )
                raise GanError(
                    f"The {'run' if resume else 'checkpoint'} {source} names {key}={target!r}: code gan would have to import and call to rebuild it. "
                    f"gan runs the components a {'run directory' if resume else 'checkpoint'} names only from modules you allow"
                    f"{' (allowed now: ' + ', '.join(prefixes) + ')' if prefixes else ''}. {way_out}"
                )
