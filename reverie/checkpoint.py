"""Checkpoint files: safetensors for tensors, JSON for everything else; never pickle.

Every file is written durably and atomically: to a temporary file beside it, flushed to disk,
renamed over the old one, and the folder's entry flushed too, so a crash or a kill at any instant
leaves either the old file or the new one, never half of one, and a power cut does not undo a
rename the program already relied on. JSON sidecars carry a header,
`{"format": "reverie", "format_version": N, ...}`, checked when they are read.

Nested Python structures holding tensors (an optimizer's state_dict, RNG states) are stored with
`split_tensors` / `join_tensors`: tensors go to safetensors under dotted keys, the rest to JSON
with `{"__tensor__": key}` placeholders. Loading checks the format version and turns a missing,
truncated or corrupted file into a one-line ReverieError.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from reverie.errors import ReverieError, disk_error

FORMAT = "reverie"
FORMAT_VERSION = 2  # 2: a run's weight files are named by their content (reverie.text.rundir)
READABLE_VERSIONS = (1, 2)
TENSOR_TAG = "__tensor__"
TEMP_SUFFIX = ".tmp"
MAX_JSON_BYTES = 64 << 20  # a bigger sidecar is not one reverie wrote


def _process_umask() -> int:
    umask = os.umask(0)  # reading the umask means setting it: done once, at import
    os.umask(umask)
    return umask


_UMASK = _process_umask()


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = TEMP_SUFFIX, size: int | None = None) -> Iterator[Path]:
    """A temporary path beside `path` to write the new file to: when the block ends the file is
    flushed to disk and replaces `path` in one rename (so readers and an interrupted save never see
    half a file); if the block raises, it is removed and `path` is untouched. The file gets the
    permissions a plain new file would (mkstemp makes it owner-only). `suffix` keeps an extension
    that picks a format; temporary names start with a dot and end with TEMP_SUFFIX (or `suffix`).
    A full disk or a read-only folder is a one-line ReverieError (reverie.errors.disk_error) that
    names the folder and the file's `size` (where not given: the bytes written when it failed)."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_beside(path, suffix)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as exc:
        written = _size_of(tmp)
        _remove(tmp)  # first, so that the error counts the space it held as free
        error = disk_error(exc, path, size, written)
        if error is None:
            raise
        raise error from None
    finally:
        _remove(tmp)


def _remove(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _size_of(path: Path | None) -> int | None:
    try:
        return path.stat().st_size if path is not None else None
    except OSError:
        return None


def temporary_beside(path: Path, suffix: str = TEMP_SUFFIX) -> Path:
    """A new empty file beside `path`, of a name no other writer gets (`.NAME.XXXX` + `suffix`),
    with the permissions a plain new file would have (mkstemp makes it owner-only)."""
    handle, tmp = tempfile.mkstemp(dir=Path(path).parent, prefix=f".{Path(path).name}.", suffix=suffix)
    os.close(handle)
    os.chmod(tmp, 0o666 & ~_UMASK)
    return Path(tmp)


def _fsync(path: str | Path) -> None:
    """Flush a file, or a folder's entries, to disk."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0)
    handle = os.open(path, flags)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace the file at `path` with `data` in one step, durably."""
    with atomic_path(path, size=len(data)) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace the text file at `path` in one step, durably."""
    write_bytes_atomic(path, text.encode("utf-8"))


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """The safetensors file of `tensors` (on the CPU, contiguous), as bytes."""
    return save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write tensors to a safetensors file atomically, with a plain file's permissions."""
    write_bytes_atomic(path, tensor_bytes(tensors))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, refusing a missing or corrupted one in one line."""
    path = Path(path)
    if not path.is_file():
        raise ReverieError(f"no checkpoint at {path}; train one first with `reverie train`")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReverieError(f"cannot read checkpoint {path} ({exc.strerror}); check its permissions") from None
    return load_tensor_bytes(data, path)


def load_tensor_bytes(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file's bytes (read from `path`, named in the error), refusing
    corrupted ones in one line."""
    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:
        raise ReverieError(
            f"checkpoint {path} is truncated or corrupted ({exc}); retrain or restore it"
        ) from None


def save_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` with the format header as JSON, atomically."""
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **data}
    write_text_atomic(path, json.dumps(payload, indent=1))


def load_json(path: Path) -> dict[str, Any]:
    """Read a JSON sidecar, checking that this version of reverie can read it; anything else (too
    big, not JSON, nested without end, another program's file) is refused in one line."""
    path = Path(path)
    if not path.is_file():
        raise ReverieError(f"no checkpoint config at {path}; train one first with `reverie train`")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ReverieError(
            f"{path} is {path.stat().st_size:,} bytes, more than a reverie config "
            f"({MAX_JSON_BYTES:,} at most); it is not one reverie wrote"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # also a number of more than 4,300 digits
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise ReverieError(
            f"checkpoint config {path} is corrupted ({reason}); retrain or restore it"
        ) from None
    if not is_reverie_json(data):
        raise ReverieError(f"{path} is not a reverie checkpoint config")
    version = data.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ReverieError(
            f"checkpoint {path} has format version {version}, this reverie reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; retrain with this version or use the reverie version "
            "that wrote it"
        )
    return data


def is_reverie_json(data: Any) -> bool:
    """Whether parsed JSON carries reverie's header."""
    return isinstance(data, dict) and data.get("format") == FORMAT


def split_tensors(obj: Any, prefix: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """Separate the tensors of a nested dict/list structure from its JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[key] = node
            return {TENSOR_TAG: key}
        if isinstance(node, dict):
            return {"__dict__": [[k, walk(v, f"{key}.{k}")] for k, v in node.items()]}
        if isinstance(node, tuple):
            return {"__tuple__": [walk(v, f"{key}.{i}") for i, v in enumerate(node)]}
        if isinstance(node, list):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(node)]
        return node

    return walk(obj, prefix), tensors


def join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `split_tensors`: the same structure, with tuples, non-string dict keys and tensors
    restored."""
    if isinstance(obj, dict) and TENSOR_TAG in obj:
        key = obj[TENSOR_TAG]
        if key not in tensors:
            raise ReverieError(f"checkpoint is missing tensor {key}; it is truncated or from another version")
        return tensors[key]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: join_tensors(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, dict) and "__tuple__" in obj:
        return tuple(join_tensors(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj
