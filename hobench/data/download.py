"""Download a file once, verify its SHA-256, and keep it in a cache.

The download goes to a temporary file beside the destination and is moved into place with
`os.replace` only after its checksum matches, so an interrupted or corrupt download never
poisons the cache; a cached file that no longer matches its checksum is fetched again.
"""

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

from hobench.data.errors import DataError, one_line

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fetch(url: str, dest: Path, sha256: str, timeout: float = 30) -> Path:
    """Return `dest` holding the bytes of `url`, whose SHA-256 must be `sha256`.

    Uses the cached file when its checksum matches (no network); otherwise downloads it.

    Raises:
        DataError: the download failed or its checksum did not match; the one-line message
            says where to place the file by hand.
    """
    dest = Path(dest)
    cached = sha256_of(dest) if dest.is_file() else None
    if cached == sha256:
        return dest
    # Said in the error if the download fails too: placing a file at dest is then not the whole
    # fix, the file already there is the wrong one.
    bad_cache = None if cached is None else f"the cached file fails its checksum (sha256 {cached})"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        try:
            digest = _download(url, fd, timeout)
        # URLError, timeouts, refused or dropped connections are OSErrors; a malformed
        # response is an HTTPException; a malformed URL is a ValueError.
        except (OSError, http.client.HTTPException, ValueError) as exc:
            problem = f"download failed ({one_line(exc)})"
            if bad_cache:
                problem = f"{bad_cache} and the {problem}"
            raise _fetch_error(url, dest, sha256, problem, replace=bad_cache is not None) from exc
        if digest != sha256:
            problem = f"checksum mismatch (downloaded sha256 {digest})"
            raise _fetch_error(url, dest, sha256, problem)
        os.chmod(tmp, 0o644)  # mkstemp makes the file owner-only; a dataset cache is shared
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)  # a no-op after os.replace
    return dest


def _download(url: str, fd: int, timeout: float) -> str:
    """Stream `url` into the open file descriptor `fd` (closing it); return the hex SHA-256."""
    hasher, received = hashlib.sha256(), 0
    with open(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
        while chunk := response.read(_CHUNK):
            hasher.update(chunk)
            out.write(chunk)
            received += len(chunk)
        # read(n) returns b"" when the connection drops early; say so rather than leave it
        # to the checksum.
        promised = response.headers.get("Content-Length")
        if promised is not None and promised.isdigit() and received < int(promised):
            raise ConnectionError(f"connection closed after {received} of {promised} bytes")
    return hasher.hexdigest()


def _fetch_error(
    url: str, dest: Path, sha256: str, problem: str, replace: bool = False
) -> DataError:
    """The one-line error for a failed fetch: the file, the problem and the manual fix."""
    place = (
        f"delete {dest}, download it yourself and put it there"
        if replace
        else (f"download it yourself and place it at {dest}")
    )
    return DataError(
        f"{dest.name}: {problem} from {url}; to fix, {place} (expected sha256 {sha256})"
    )
