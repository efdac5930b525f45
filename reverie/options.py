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
"""

from __future__ import annotations

import argparse
import collections.abc
import copy
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Iterator
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
) -> Any:
    """A dataclass field for an option.

    `choices`, `low`/`high` (inclusive unless `low_open`/`high_open`) are what `check` enforces;
    `rule` replaces the generated wording of the bound in the error ("0 (greedy) or positive"); for an
    option typed `Callable` (API-only, such as `stop=`), which `check` requires to be callable, it says
    what function it takes.
    `default=MISSING` makes a value that must be given. `cli=False` keeps it off the command line
    (API-only values such as objects); `switch` makes a bool a plain `--flag` (store_true) instead of
    `--flag/--no-flag`. `spelled` is the flag's own spelling where the name cannot be it (`--from`,
    a Python keyword).
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
    field = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    return (field.metadata.get("spelled") if field is not None else None) or flag(name)


def fields(cls: type) -> Iterator[tuple[dataclasses.Field, type, bool]]:
    """(field, base type, may be None) for each option field of `cls`, in order."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if "help" not in field.metadata:
            continue
        base, optional = _unwrap_optional(hints[field.name])
        yield field, base, optional


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        return (args[0] if len(args) == 1 else object), optional
    return hint, False


def default_of(cls: type, name: str) -> Any:
    """The default value of option `name` of `cls`."""
    return _default(next(f for f in dataclasses.fields(cls) if f.name == name))


def _default(field: dataclasses.Field) -> Any:
    if field.default is MISSING and field.default_factory is not MISSING:
        return field.default_factory()
    return None if field.default is MISSING else field.default


def bounds(cls: type, name: str, step: float = 0) -> tuple[float | None, float | None]:
    """(low, high) of option `name` of `cls`, None where unbounded: what the page's widgets use.
    An open bound moves inward by `step` (a slider's smallest move)."""
    meta = next(f for f in dataclasses.fields(cls) if f.name == name).metadata
    low, high = meta.get("low"), meta.get("high")
    if low is not None and meta.get("low_open"):
        low += step
    if high is not None and meta.get("high_open"):
        high -= step
    return low, high


# ---- checking ---------------------------------------------------------------------------------------


def check(options: Any) -> None:
    """Refuse, in one line, the first option of `options` outside its type, bounds or choices."""
    for field, base, optional in fields(type(options)):
        value = getattr(options, field.name)
        if value is None and optional:
            continue
        meta = field.metadata
        if typing.get_origin(base) is collections.abc.Callable:  # an API-only function, e.g. stop=
            require(callable(value), f"{field.name}= takes {meta['rule'] or 'a function'}, got {value!r}")
            continue
        check_value(
            meta.get("spelled") or flag(field.name),
            value,
            kind=base,
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
    for field, base, _ in fields(cls):
        meta = field.metadata
        if not meta["cli"] or field.name in skip:
            continue
        default = _default(field)
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
                settings["metavar"] = meta["metavar"] or field.name.upper()
            if default is not None and default != () and not meta["switch"]:
                shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
                settings["help"] += f" (default: {shown})"
        settings.update(overrides.get(field.name, {}))
        spelling = meta.get("spelled") or flag(field.name)
        settings.setdefault("dest", field.name)
        parser.add_argument(spelling, **{k: v for k, v in settings.items() if v is not None})


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
    names = {field.name for field, _, _ in fields(cls)}
    return {name: value for name, value in vars(args).items() if name in names}


def resolve(
    cls: type[T],
    given: collections.abc.Mapping[str, Any] | None = None,
    preset: str | None = None,
    start: collections.abc.Mapping[str, Any] | None = None,
) -> T:
    """The options of `cls` that a user's keywords ask for, checked: the fields' defaults, then the
    named preset's values (`cls.PRESETS`; where `cls` has a `preset` field, the given one), then
    every given value that is not None (None: not given), combined by the class's own rules where it
    has them (`cls.combine(values, given, preset, resumed) -> values`, `resumed` when `start`, a run's
    own options, replaces the defaults and preset). An unknown name or preset is refused in one line
    (`cls.KIND` names the options in it), every value is checked (`validate()` where `cls` has one,
    else `check`)."""
    given = dict(given or {})
    names = [field.name for field in dataclasses.fields(cls)]
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
        values = {field.name: _default(field) for field in dataclasses.fields(cls)}
        values.update(copy.deepcopy(presets.get(preset, {})))  # never hand out the presets' own values
    else:
        values = dict(start)
    chosen = {name: value for name, value in given.items() if value is not None}
    combine = getattr(cls, "combine", None)
    values = combine(values, chosen, preset, start is not None) if combine else {**values, **chosen}
    options = cls(**values)
    validate = getattr(options, "validate", None)
    if validate is not None:
        validate()
    else:
        check(options)
    return options


__all__ = [
    "add_flags",
    "add_progress_flags",
    "bounds",
    "check",
    "check_value",
    "default_of",
    "flag",
    "flag_of",
    "given",
    "option",
    "resolve",
]
