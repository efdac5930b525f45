"""User errors: what the user did wrong, said in one line.

Any code path that detects bad input (a missing file, an out-of-range option, a corrupt
checkpoint) raises `ReverieError` with a message that says what is wrong and what to do.
The CLI prints it as a single line on stderr and exits with code 2; Python callers can catch it.
"""

from __future__ import annotations


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
