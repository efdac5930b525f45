"""Fuzzing a run's files: config.json (wrong types, missing keys, huge numbers, deep nesting) read by
RunConfig.load and reverie.load, and a safetensors file whose header lies (its length, offsets, dtypes
and shapes) read by load_tensors and, past its checksum, by reverie.load.

    REVERIE_FUZZ_EXAMPLES=2000 python -m pytest -q tests/fuzz/test_checkpoints.py
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from .harness import FUZZ, Worker, write_case
from .strategies import (
    dumps,
    json_values,
    long_number,
    mutated_bytes,
    mutated_json,
    mutated_section,
    nested_json,
)

DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL"]
ODD_DTYPES = ["F8_E4M3", "F8_E5M2", "C64", "F4", "", "f32", "X" * 300]
dims = st.one_of(st.integers(0, 8), st.sampled_from([2**31, 2**40, 2**63 - 1, 2**64 - 1, 2**64, -1]))
header_values = st.one_of(
    st.sampled_from(DTYPES + ODD_DTYPES),
    st.lists(dims, max_size=5),  # a shape, or data_offsets
    st.tuples(st.integers(-1, 4096), st.integers(-1, 4096)).map(list),
    json_values,
)


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def _at(document: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        document = document[key]
    return document


def _replaced(document: dict, path: tuple[str, ...], value: object) -> dict:
    """A copy of `document` with the node at `path` replaced."""
    if not path:
        return value
    return {**document, path[0]: _replaced(document[path[0]], path[1:], value)}


def _copy_run(run: Path, into: Path) -> None:
    for entry in run.iterdir():
        if entry.suffix == ".safetensors":
            shutil.copyfile(entry, into / entry.name)


def _check_run(worker: Worker, config: Path) -> None:
    worker.check("run_config", config)
    worker.check("load_run", config)


@FUZZ
@given(data=st.data())
def test_a_section_of_a_run_s_config_json(
    worker: Worker, tiny_run: Path, case_dir: Path, data: st.DataObject
) -> None:
    """One section (model, tokenizer, corpus, options, state, files, one file's entry) with keys set to
    values of any type, out of bounds, huge; keys removed and added."""
    base = _config(tiny_run)
    _copy_run(tiny_run, case_dir)
    sections = [(key,) for key, value in base.items() if isinstance(value, dict)]
    sections += [("files", role) for role in base["files"]]
    section = data.draw(st.sampled_from(sections), label="section")
    new = data.draw(mutated_section(_at(base, section)), label="new section")
    _check_run(worker, write_case(case_dir / "config.json", dumps(_replaced(base, section, new))))


@FUZZ
@given(data=st.data())
def test_a_run_s_config_json(worker: Worker, tiny_run: Path, case_dir: Path, data: st.DataObject) -> None:
    """The whole file: values anywhere changed, its bytes cut or flipped, JSON nested without end."""
    base = _config(tiny_run)
    _copy_run(tiny_run, case_dir)
    text = data.draw(
        st.one_of(mutated_json(base).map(dumps), mutated_bytes(dumps(base)), nested_json, long_number),
        label="config.json",
    )
    _check_run(worker, write_case(case_dir / "config.json", text))


def _lying_header(tensors_file: bytes) -> st.SearchStrategy[bytes]:
    (length,) = struct.unpack("<Q", tensors_file[:8])
    header = json.loads(tensors_file[8 : 8 + length])
    body = tensors_file[8 + length :]

    def assemble(new_header: dict, declared: int | None, body_cut: int) -> bytes:
        encoded = dumps(new_header)
        size = len(encoded) if declared is None else declared
        return struct.pack("<Q", size % 2**64) + encoded + body[:body_cut]

    return st.builds(
        assemble,
        mutated_json(header, header_values),
        st.one_of(st.none(), st.none(), st.integers(0, 2**64 - 1), st.integers(0, length + 64)),
        st.one_of(st.just(len(body)), st.integers(0, len(body))),
    )


@FUZZ
@given(data=st.data())
def test_a_safetensors_file_whose_header_lies(
    worker: Worker, tiny_run: Path, case_dir: Path, data: st.DataObject
) -> None:
    config = _config(tiny_run)
    original = (tiny_run / config["files"]["model"]["path"]).read_bytes()
    tensors = data.draw(st.one_of(_lying_header(original), mutated_bytes(original)), label="weights")
    name = "weights-0000000000000000.safetensors"
    write_case(case_dir / name, tensors)
    worker.check("safetensors", case_dir / name)
    # the same file past its checksum: config.json names it with its sha256, so reverie.load reads it
    stored = {"path": name, "sha256": hashlib.sha256(tensors).hexdigest()}
    config["files"] = {role: stored for role in config["files"] if role != "state"}
    write_case(case_dir / "config.json", dumps(config))
    worker.check("load_run", case_dir / "config.json")
