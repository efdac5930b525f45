"""Named downloads: a URL plus a sha256 checksum, fetched once into a cache directory.

The cache is `$REVERIE_CACHE`, else `$XDG_CACHE_HOME/reverie`, else `~/.cache/reverie`.
`fetch()` downloads to a temporary file, checks the sha256 (a full digest or a prefix, as
torchvision names its weight files), and only then renames it into place, so an interrupted
or corrupted download never leaves a bad file behind. A cached file is checked again every time
it is used, and fetched anew if it no longer matches (a truncated copy, a flipped bit, a file put
there by hand). Offline, it raises a one-line ReverieError naming the URL and what to do instead.

    python -m reverie.hub URL SHA256 DEST   # fetch one file by hand
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from reverie.checkpoint import temporary_beside
from reverie.errors import ReverieError, disk_error

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Remote:
    """A file on the web: where it is, its sha256 (full or a prefix), and its name in the cache."""

    url: str
    sha256: str
    filename: str


def cache_dir() -> Path:
    """The directory reverie caches downloads and token files in."""
    if os.environ.get("REVERIE_CACHE"):
        return Path(os.environ["REVERIE_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "reverie"
    return Path.home() / ".cache" / "reverie"


def sha256_of(path: Path) -> str:
    """Hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(remote: Remote, dest_dir: Path | None = None, offline_hint: str = "") -> Path:
    """Return the local path of `remote`, downloading and checking it on first use.

    `offline_hint` is appended to the error when the download fails (for example
    "pass a local file instead").
    """
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir()
    dest = dest_dir / remote.filename
    damaged = dest.exists()
    if damaged:
        if matches(dest, remote.sha256):
            return dest
        print(
            f"reverie: {dest} does not match its sha256 {remote.sha256}; downloading it again",
            file=sys.stderr,
        )
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        # a partial file of its own: several processes (torchrun) or threads (the page) may fetch at once
        partial = temporary_beside(dest, ".part")
    except OSError as exc:  # a read-only or full cache folder
        raise (disk_error(exc, dest) or exc) from None
    try:
        _download(remote.url, partial)
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException, ValueError) as exc:
        written = partial.stat().st_size if partial.exists() else None
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError) and (full := disk_error(exc, dest, written=written)) is not None:
            raise full from None
        reason = getattr(exc, "reason", exc)
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        hint = f"; {offline_hint}" if offline_hint else ""
        where = (
            f"replace the damaged {dest} (its sha256 does not match)"
            if damaged
            else f"put the file at {dest}"
        )
        raise ReverieError(f"could not download {remote.url} ({reason}); {where}{hint}") from None
    except BaseException:  # Ctrl-C mid-download: leave no partial file behind
        partial.unlink(missing_ok=True)
        raise
    digest = sha256_of(partial)
    if not digest.startswith(remote.sha256.lower()):
        partial.unlink(missing_ok=True)
        raise ReverieError(
            f"checksum mismatch for {remote.url}: expected sha256 {remote.sha256}, got {digest[:16]}...; "
            "the download was deleted, try again or pass a local file"
        )
    try:
        os.replace(partial, dest)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise (disk_error(exc, dest) or exc) from None
    return dest


def matches(path: Path, sha256: str) -> bool:
    """Whether the file's sha256 is `sha256` (a full hex digest or a prefix, any case)."""
    return sha256_of(path).startswith(sha256.lower())


def _download(url: str, dest: Path, timeout_s: float = 30.0) -> None:
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=Path(url).name, file=sys.stderr, leave=False
        ) as bar:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(chunk)
                bar.update(len(chunk))


if __name__ == "__main__":
    url, sha, dest = sys.argv[1:4]
    print(fetch(Remote(url, sha, Path(dest).name), Path(dest).parent))
