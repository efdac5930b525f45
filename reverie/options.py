"""Options as dataclass fields: one definition per option gives its flag, its help, its check.

An options class (training, sampling, dreaming, the page's settings) declares each option once:

    @dataclass
    class DreamOptions:
        octaves: int = option(5, "number of scales", low=1)
        step: float = option(0.02, "step size", low=0, low_open=True)

    add_flags(parser, DreamOptions)            # --octaves N, --step STEP, help with the defaults
    typed = given(args, DreamOptions)          # {name: value} of the flags the user typed
    check(DreamOptions(**typed))               # every bound and choice, refused in one line

The type comes from the annotation (int, float, str, bool, Path, tuple[float, ...]; `X | None` means
the option may be left unset). A value out of its bounds or choices is a ReverieError that names the
flag (`--octaves must be a positive integer, got 0`), whether it came from the command line, the
Python API or the page. `check_value` applies the same rule to a single value, for types that
check an argument in their constructor (the sampling processors).

A field declared with `group(cls)` holds an object of another options class (training's `model`, a
ModelConfig): its options are the outer class's too, by their own names, so keywords, flags and
checks stay flat while the value is nested. `options_of` is the one map of names to places that
`build`, `replaced` and `keywords_of` go through.
"""

from __future__ import annotations

import argparse
import collections.abc
import copy
import dataclasses
import functools
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from reverie.errors import ReverieError, require

T = TypeVar("T")

MISSING = dataclasses.MISSING


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    rule: str | None = None,
    cli: bool = True,
    switch: bool = False,
    metavar: str | None = None,
    spelled: str | None = None,
    named: str | None = None,
) -> Any:
    """A dataclass field for an option.

    `choices`, `low`/`high` (inclusive unless `low_open`/`high_open`) are what `check` enforces;
    `rule` replaces the generated wording of the bound in the error ("0 (greedy) or positive"); for an
    option typed `Callable` (API-only, such as `stop=`), which `check` requires to be callable, it says
    what function it takes.
    `default=MISSING` makes a value that must be given. `cli=False` keeps it off the command line
    (API-only values such as objects); `switch` makes a bool a plain `--flag` (store_true) instead of
    `--flag/--no-flag`. `spelled` is the flag's own spelling where the name cannot be it (`--from`,
    a Python keyword); `named` is the option's name for users (keyword and flag) where the field's
    own differs (ModelConfig's `kind` is `model=` and `--model`).
    """
    metadata = {
        "help": help,
        "choices": choices,
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "rule": rule,
        "cli": cli,
        "switch": switch,
        "metavar": metavar,
        "spelled": spelled,
        "named": named,
    }
    if default is MISSING:  # a value that must be given
        return dataclasses.field(metadata=metadata)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag(name: str) -> str:
    """The command-line spelling of an option name: `max_loss` -> `--max-loss`."""
    return "--" + name.replace("_", "-")


def flag_of(cls: type, name: str) -> str:
    """The command-line spelling of option `name` of `cls` (its `spelled` one, else `flag(name)`)."""
    found = options_of(cls).get(name)
    return found.flag if found is not None else flag(name)


def group(cls: type, *, leave: tuple[str, ...] = (), helps: dict[str, str] | None = None) -> Any:
    """A dataclass field holding an object of the options class `cls` (by default `cls()`), whose
    options are the outer class's too, by their own names, but the fields in `leave`; `helps`
    replaces the help of some (by field name) where the outer class says more."""
    metadata = {"group": cls, "leave": leave, "helps": helps or {}}
    return dataclasses.field(default_factory=cls, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of an options class: the name users give it (a keyword; `flag` on the command
    line), where its value is (`path`: `("lr",)`, or `("model", "kind")` in a group), its field,
    base type, whether it may be None, and its metadata (a group's `helps` applied)."""

    name: str
    path: tuple[str, ...]
    field: dataclasses.Field
    base: Any
    optional: bool
    meta: collections.abc.Mapping[str, Any]

    @property
    def flag(self) -> str:
        return self.meta.get("spelled") or flag(self.name)

    def value(self, options: Any) -> Any:
        """This option's value in `options` (an object of its class)."""
        return functools.reduce(getattr, self.path, options)


@functools.cache
def options_of(cls: type) -> dict[str, Option]:
    """Every option of `cls` by the name users give it, in order, a group's in its place."""
    found: dict[str, Option] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        inner = field.metadata.get("group")
        if inner is not None:
            for name, member in options_of(inner).items():
                if member.path[0] in field.metadata["leave"]:
                    continue
                helped = field.metadata["helps"].get(member.path[0])
                meta = {**member.meta, "help": helped} if helped else member.meta
                found[name] = dataclasses.replace(member, path=(field.name, *member.path), meta=meta)
        elif "help" in field.metadata:
            base, optional = _unwrap_optional(hints[field.name])
            name = field.metadata.get("named") or field.name
            found[name] = Option(name, (field.name,), field, base, optional, field.metadata)
    return found


def build(cls: type[T], values: collections.abc.Mapping[str, Any]) -> T:
    """An object of `cls` from option values by name (the rest their defaults), a group's gathered
    into its own object."""
    known, groups = _split(cls, values)
    for field in dataclasses.fields(cls):
        if "group" in field.metadata:
            known[field.name] = build(field.metadata["group"], groups.get(field.name, {}))
    return cls(**known)


def replaced(options: T, values: collections.abc.Mapping[str, Any]) -> T:
    """`options` with the options named in `values` set (in a group, its object replaced)."""
    changes, groups = _split(type(options), values)
    for head, inner in groups.items():
        changes[head] = replaced(getattr(options, head), inner)
    return dataclasses.replace(options, **changes)  # type: ignore[type-var]


def _split(cls: type, values: collections.abc.Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`values` by name as ({field: value}, {group field: {name: value}})."""
    own, fields_, groups = options_of(cls), {}, {}
    for name, value in values.items():
        head, *inside = own[name].path
        if inside:
            groups.setdefault(head, {})[name] = value
        else:
            fields_[head] = value
    return fields_, groups


def keywords_of(options: Any, within: str | None = None) -> dict[str, Any]:
    """The option values of `options` by name, as `resolve` and `build` take them (`within`: those
    of that group only)."""
    return {
        name: found.value(options)
        for name, found in options_of(type(options)).items()
        if within is None or (len(found.path) > 1 and found.path[0] == within)
    }


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        return (args[0] if len(args) == 1 else object), optional
    return hint, False


def default_of(cls: type, name: str) -> Any:
    """The default value of option `name` of `cls`."""
    return _default(options_of(cls)[name].field)


def _default(field: dataclasses.Field) -> Any:
    if field.default is MISSING and field.default_factory is not MISSING:
        return field.default_factory()
    return None if field.default is MISSING else field.default


def bounds(cls: type, name: str, step: float = 0) -> tuple[float | None, float | None]:
    """(low, high) of option `name` of `cls`, None where unbounded: what the page's widgets use.
    An open bound moves inward by `step` (a slider's smallest move)."""
    meta = options_of(cls)[name].meta
    low, high = meta.get("low"), meta.get("high")
    if low is not None and meta.get("low_open"):
        low += step
    if high is not None and meta.get("high_open"):
        high -= step
    return low, high


# ---- checking ---------------------------------------------------------------------------------------


def check(options: Any) -> None:
    """Refuse, in one line, the first option of `options` outside its type, bounds or choices."""
    for found in options_of(type(options)).values():
        value, meta = found.value(options), found.meta
        if value is None and found.optional:
            continue
        if typing.get_origin(found.base) is collections.abc.Callable:  # an API-only function, e.g. stop=
            require(callable(value), f"{found.name}= takes {meta['rule'] or 'a function'}, got {value!r}")
            continue
        check_value(
            found.flag,
            value,
            kind=found.base,
            low=meta["low"],
            high=meta["high"],
            low_open=meta["low_open"],
            high_open=meta["high_open"],
            choices=meta["choices"],
            rule=meta["rule"],
        )


def check_value(
    name: str,
    value: Any,
    *,
    kind: Any = float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[Any, ...] | None = None,
    rule: str | None = None,
) -> None:
    """Refuse `value` of option `name` unless it is of `kind` and within the bounds and choices."""
    if choices is not None:
        if value not in choices:
            raise ReverieError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, choices))}")
        return
    wording = rule or _bound_words(kind, low, high, low_open, high_open)
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ReverieError(f"{name} must be {wording or 'an integer'}, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise ReverieError(f"{name} must be {wording or 'a finite number'}, got {value!r}")
    elif kind is bool:
        if not isinstance(value, bool):
            raise ReverieError(f"{name} must be true or false, got {value!r}")
        return
    else:
        return
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ReverieError(f"{name} must be {wording}, got {value!r}")


def _finite(value: float) -> bool:
    """Whether `value` is a finite float, or an int a float holds (math.isfinite(10**400) overflows)."""
    return math.isfinite(value) if isinstance(value, float) else abs(value) <= sys.float_info.max


def _bound_words(kind: Any, low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """How a bound reads in an error: 'a positive integer', 'zero or positive', 'in [0, 1)'."""
    if low is None and high is None:
        return ""
    if high is None:
        if kind is int:
            bottom = low + 1 if low_open else low
            if bottom == 1:
                return "a positive integer"
            if bottom == 0:
                return "zero or a positive integer"
            return f"an integer of at least {_number(bottom)}"
        if low == 0:
            return "positive" if low_open else "zero or positive"
        return f"above {_number(low)}" if low_open else f"at least {_number(low)}"
    if low is None:
        return f"below {_number(high)}" if high_open else f"at most {_number(high)}"
    if kind is int and not high_open:
        return f"{_bound_words(kind, low, None, low_open, False)} (at most {_number(high)})"
    interval = f"{'(' if low_open else '['}{_number(low)}, {_number(high)}{')' if high_open else ']'}"
    return f"an integer in {interval}" if kind is int else f"in {interval}"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


# ---- the command line ---------------------------------------------------------------------------


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    skip: tuple[str, ...] = (),
    overrides: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Add a flag for every command-line option of `cls` (except `skip`) to `parser`.

    Flags left out by the user leave no attribute in the parsed namespace, so `given` tells a typed
    `--lr 0.004` from the default (which is how presets and resumed runs keep their own values).
    `overrides` passes other argparse settings for a flag (a command that takes several values; None
    removes a setting).
    """
    overrides = overrides or {}
    for found in options_of(cls).values():
        meta, base, name = found.meta, found.base, found.name
        if not meta["cli"] or name in skip:
            continue
        default = _default(found.field)
        settings: dict[str, Any] = {"default": argparse.SUPPRESS, "help": meta["help"]}
        if base is bool:
            settings["action"] = "store_true" if meta["switch"] else argparse.BooleanOptionalAction
        else:
            if meta["choices"] is not None:
                settings["choices"] = meta["choices"]
            elif base in (int, float, str, Path):
                settings["type"] = base
            elif typing.get_origin(base) is tuple:
                settings.update(type=typing.get_args(base)[0], nargs="*")
            else:
                settings["type"] = str  # parsed by the options class (layers, channels, ...)
            if "choices" not in settings:
                settings["metavar"] = meta["metavar"] or name.upper()
            if default is not None and default != () and not meta["switch"]:
                shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
                settings["help"] += f" (default: {shown})"
        settings.update(overrides.get(name, {}))
        settings.setdefault("dest", name)
        parser.add_argument(found.flag, **{k: v for k, v in settings.items() if v is not None})


def add_progress_flags(parser: argparse.ArgumentParser, options: type) -> None:
    """--progress/--no-progress, for the `progress` option of `options` (its help), and --quiet, the
    same as --no-progress: one spelling in every command that shows progress bars (train, dream,
    visualize). Like every option's flag, `args.progress` is set only when one of them is typed."""
    field = next(field for field in dataclasses.fields(options) if field.name == "progress")
    default = "on" if field.default else "off"
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help=f"{field.metadata['help']} (default: {default}; --quiet is the same as --no-progress)",
    )
    parser.add_argument(
        "--quiet", dest="progress", action="store_false", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The options of `cls` that the user typed on the command line."""
    names = options_of(cls)
    return {name: value for name, value in vars(args).items() if name in names}


def resolve(
    cls: type[T],
    given: collections.abc.Mapping[str, Any] | None = None,
    preset: str | None = None,
    start: T | None = None,
) -> T:
    """The options of `cls` that a user's keywords ask for, checked: the fields' defaults, then the
    named preset's values (`cls.PRESETS`; where `cls` has a `preset` field, the given one), then
    every given value that is not None (None: not given), combined by the class's own rules where it
    has them (`cls.combine(values, given, preset, resumed) -> values`, `resumed` when `start`, a run's
    own options, replaces the defaults and preset). Values go by the options' names (a group's too,
    see `options_of`). An unknown name or preset is refused in one line (`cls.KIND` names the options
    in it), every value is checked (`validate()` where `cls` has one, else `check`)."""
    given = dict(given or {})
    names = options_of(cls)
    unknown = sorted(set(given) - set(names))
    kind = getattr(cls, "KIND", cls.__name__)
    require(not unknown, f"unknown {kind} option {', '.join(map(repr, unknown))}; valid: {', '.join(names)}")
    presets: dict[str, dict[str, Any]] = getattr(cls, "PRESETS", {})
    called = "preset"
    if "preset" in names:  # a field: the flag names it
        preset, called = (preset if preset is not None else given.get("preset")), flag_of(cls, "preset")
    if preset is not None:
        require(preset in presets, f"unknown {called} {preset!r}; choose one of {', '.join(presets)}")
    if start is None:
        values = {name: _default(found.field) for name, found in names.items()}
        values.update(copy.deepcopy(presets.get(preset, {})))  # never hand out the presets' own values
    else:
        values = keywords_of(start)
    chosen = {name: value for name, value in given.items() if value is not None}
    combine = getattr(cls, "combine", None)
    values = combine(values, chosen, preset, start is not None) if combine else {**values, **chosen}
    resolved = build(cls, values)
    validate = getattr(resolved, "validate", None)
    if validate is not None:
        validate()
    else:
        check(resolved)
    return resolved


__all__ = [
    "Option",
    "add_flags",
    "add_progress_flags",
    "bounds",
    "build",
    "check",
    "check_value",
    "default_of",
    "flag",
    "flag_of",
    "given",
    "group",
    "keywords_of",
    "option",
    "options_of",
    "replaced",
    "resolve",
]
