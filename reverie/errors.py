"""User errors: what the user did wrong, said in one line.

Any code path that detects bad input (a missing file, an out-of-range option, a corrupt
checkpoint) raises `ReverieError` with a message that says what is wrong and what to do.
The CLI prints it as a single line on stderr and exits with code 2; Python callers can catch it.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk, or the user's quota on it
NO_PERMISSION = (errno.EROFS, errno.EACCES, errno.EPERM)  # a read-only disk or a folder not ours


class ReverieError(Exception):
    """Bad input from the user; the message is one line that says what to do."""

    exit_code = 2


def require(condition: bool, message: str) -> None:
    """Raise ReverieError(message) unless `condition` holds."""
    if not condition:
        raise ReverieError(message)


def require_positive(name: str, value: float) -> None:
    """Refuse zero or negative values of a count or size option such as `--epochs`."""
    require(value > 0, f"{name} must be positive, got {value}")


def disk_error(
    exc: OSError,
    path: str | os.PathLike[str] | None = None,
    needed: int | None = None,
    written: int | None = None,
) -> ReverieError | None:
    """The one-line error for a file that could not be written because its disk is full (naming the
    folder, the bytes the file `needed` where known, else the bytes `written` when it failed, and
    the bytes free) or because its folder is read-only or not the user's; None for any other
    OSError. `path`: the file (default: the one `exc` names)."""
    if exc.errno not in NO_SPACE + NO_PERMISSION:
        return None
    target = Path(path if path is not None else (exc.filename or "."))
    folder = target if target.is_dir() else target.parent
    if exc.errno in NO_PERMISSION:
        return ReverieError(
            f"cannot write in {folder} ({exc.strerror}); make it writable or choose another folder"
        )
    if needed is not None:
        what = f"writing {target.name} needed {needed:,} bytes"
    elif written is not None:
        what = f"writing {target.name} stopped after {written:,} bytes"
    else:
        what = f"writing {target.name} needed more space"
    return ReverieError(
        f"no space left in {folder}: {what} and {free_bytes(folder):,} bytes are free; free some "
        "space or write to another disk (nothing already saved was lost)"
    )


def free_bytes(folder: Path) -> int:
    """Bytes free on the disk of `folder` (or of the nearest folder above it that exists)."""
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 0


def first_line(exc: BaseException) -> str:
    """The first line of `exc`'s message, or its type's name when it has none: what a one-line
    error quotes of a library's exception."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
