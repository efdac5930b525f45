"""Hypothesis strategies for hostile files: JSON that lies (wrong types, missing keys, huge numbers, deep
nesting) and bytes cut, flipped, overwritten or grown."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from hypothesis import strategies as st

HUGE_INTS = [2**31, 2**32 + 1, 2**53 + 1, 2**63, 2**64, 2**64 + 7, 10**30, 10**400, -(10**400), -1, -(2**63)]
ODD_FLOATS = [float("nan"), float("inf"), float("-inf"), 1e308, -0.0, 5e-324, 0.5, 1.5]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD_FLOATS),
    st.text(max_size=12),
    st.sampled_from(["", "lstm", "transformer", "F32", "../x", "/etc/passwd", "\x00", "\ud800", "a" * 5000]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)


# what a field of a config may be set to: its bounds and past them, every JSON type, numbers no float holds
field_values = st.one_of(
    st.sampled_from(
        HUGE_INTS + ODD_FLOATS + [None, True, False, "", [], {}, 0, 1, 2, 255, 256, 16_383, 16_384]
    ),
    st.sampled_from(["x\x00y", "a" * 300, ".hidden", "../weights", "weights-0.safetensors", "\ud800"]),
    st.integers(-2, 20_000),
    json_values,
)


@st.composite
def mutated_section(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """The JSON object `base` (a config section) with one to three of its keys set to `field_values`,
    maybe one key removed and maybe an unknown one added."""
    section = json.loads(json.dumps(base))
    for key in draw(st.lists(st.sampled_from(sorted(base)), min_size=1, max_size=3, unique=True)):
        section[key] = draw(field_values)
    if draw(st.booleans()) and section:
        del section[draw(st.sampled_from(sorted(section)))]
    if draw(st.integers(0, 4)) == 0:
        section[draw(st.text(max_size=8))] = draw(field_values)
    return section


def dumps(value: Any) -> bytes:
    """JSON as Python writes it: NaN and Infinity included (Python's reader takes them)."""
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@st.composite
def mutated_json(draw: st.DrawFn, base: Any, values: st.SearchStrategy[Any] = json_values) -> Any:
    """`base` (a parsed JSON document) with one to four changes, each at a path into it: a value replaced
    (by one of `values`), a key removed, an unknown key added, a list cut or grown."""
    document = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 4))):
        document = _mutate_at(draw, document, values)
    return document


def _mutate_at(draw: st.DrawFn, node: Any, values: st.SearchStrategy[Any]) -> Any:
    children = (
        list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
    )
    if children and draw(st.integers(0, 3)) > 0:  # mostly go deeper
        key = draw(st.sampled_from(children))
        node[key] = _mutate_at(draw, node[key], values)
        return node
    action = draw(st.sampled_from(["replace", "remove", "add", "resize"]))
    if action == "remove" and children:
        del node[draw(st.sampled_from(children))]
        return node
    if action == "add" and isinstance(node, dict):
        node[draw(st.text(max_size=10))] = draw(values)
        return node
    if action == "resize" and isinstance(node, list):
        return node[: draw(st.integers(0, len(node)))] + draw(st.lists(values, max_size=3))
    return draw(values)


def _nested(depth: int, opener: str, key: str) -> bytes:
    closer = "]" * depth if opener == "[" else "0" + "}" * depth
    return f'{{"format": "reverie", "format_version": 2, "{key}": {opener * depth}{closer}}}'.encode()


def _long_number(digits: int, key: str) -> bytes:
    return f'{{"format": "reverie", "format_version": 2, "{key}": {"7" * digits}}}'.encode()


# a number of more digits than Python turns into an int (4,300), or not quite
long_number = st.builds(
    _long_number, st.integers(4_000, 50_000), st.sampled_from(["format_version", "model", "files"])
)


# a JSON document nested deeper than any reader recurses (or not quite), under one of a run's keys
nested_json = st.builds(
    _nested,
    st.one_of(st.integers(1, 2_000), st.integers(1, 200_000)),
    st.sampled_from(["[", '{"a": ']),
    st.sampled_from(["model", "tokenizer", "files", "state", "options", "corpus"]),
)


@st.composite
def mutated_bytes(draw: st.DrawFn, base: bytes) -> bytes:
    """`base` cut short, with bytes flipped or overwritten, with a run of bytes inserted, or grown."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "append"]))
        at = draw(st.integers(0, len(data)))
        if action == "truncate":
            del data[at:]
        elif action == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(chunk)] = chunk
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            data += draw(st.one_of(st.binary(max_size=64), st.just(b"\xff" * 4096), st.just(b"\x00" * 4096)))
    return bytes(data)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC (so a reader goes past it to the next check)."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
