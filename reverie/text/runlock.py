"""The lock on a run directory: one process at a time trains into it, and a second writer (the
CLI's or the page's) is refused in one line naming the first (pid, host, command line, since when).

    with RunLock(Path("runs/shakespeare")):   # ReverieError if another process holds it
        ...                                   # train into the folder

    python -m reverie.text.runlock RUN_DIR    # who holds the lock, if anyone
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from reverie.errors import ReverieError, disk_error
from reverie.text.rundir import LOCK

if TYPE_CHECKING:
    from typing_extensions import Self


class RunLock:
    """An exclusive lock on a run directory for as long as a process trains into it.

    The lock is an flock on RUN_DIR/.lock, which holds who owns it (pid, host, command line, since
    when, as JSON); the system releases it when the process ends, however it ends, so a killed run
    never leaves the folder locked. A second process, the CLI's or the page's, is refused in one
    line naming the first. A folder the lock created and nothing else was written to is removed
    again on release (a refused run leaves nothing).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._handle: int | None = None
        self._created = False

    def acquire(self) -> None:
        self._created = not self.run_dir.exists()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            handle = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only --out is refused before anything else happens
            raise (disk_error(exc, self.run_dir / LOCK) or exc) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = describe_owner(os.read(handle, 4096))
            os.close(handle)
            raise ReverieError(
                f"{self.run_dir} is in use by another reverie process ({owner}); wait for it to finish, "
                "stop it, or choose another --out"
            ) from None
        self._handle = handle
        try:
            os.ftruncate(handle, 0)
            os.write(handle, json.dumps(_owner()).encode())
        except OSError as exc:  # a full disk before the run starts
            self.release()
            raise (disk_error(exc, self.run_dir / LOCK) or exc) from None

    def release(self) -> None:
        if self._handle is None:
            return
        if self._created and [entry.name for entry in self.run_dir.iterdir()] == [LOCK]:
            (self.run_dir / LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()
        with contextlib.suppress(OSError):
            fcntl.flock(self._handle, fcntl.LOCK_UN)
        os.close(self._handle)
        self._handle = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


MAX_COMMAND_SHOWN = 200  # characters of the owner's command line in a refusal


def _owner() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def describe_owner(data: bytes) -> str:
    """What a lock file's bytes say of its owner, in words: "pid 12 on host, `reverie train ...`,
    since ..." (a lock of an older version holds only the pid; unreadable bytes give "pid unknown")."""
    text = data.decode(errors="replace").strip()
    try:
        owner = json.loads(text)
    except ValueError:
        owner = None
    if not isinstance(owner, dict):
        return f"pid {text}" if text.isdigit() else "pid unknown"
    words = f"pid {owner.get('pid', 'unknown')}"
    if owner.get("host"):
        words += f" on {owner['host']}"
    if owner.get("command"):
        command = str(owner["command"])
        shown = command if len(command) <= MAX_COMMAND_SHOWN else command[: MAX_COMMAND_SHOWN - 3] + "..."
        words += f", `{shown}`"
    if owner.get("since"):
        words += f", since {owner['since']}"
    return words


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else ".") / LOCK
    print(describe_owner(path.read_bytes()) if path.is_file() else f"no lock file at {path}")
