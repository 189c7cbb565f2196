"""Download and safe extraction of the MovieLens releases.

``download_movielens(name, cache_dir)`` fetches
``https://files.grouplens.org/datasets/movielens/{name}.zip`` into ``cache_dir``, checks its
sha256 where a hash is pinned (else logs the computed one) and extracts it. The work is
done by :func:`fetch_and_extract`, which takes any URL that ``urllib`` opens (including
``file://``), so it can be tested offline.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import pathlib
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Optional

from genrec_jax.data.errors import DataError, PathLike
from genrec_jax.data.releases import MOVIELENS_LAYOUT

__all__ = ["MOVIELENS_SHA256", "MOVIELENS_URL", "download_movielens", "fetch_and_extract"]

log = logging.getLogger(__name__)

MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/{name}.zip"
# Published zips whose hash we know; other releases are downloaded without a pin and the
# computed hash is logged.
MOVIELENS_SHA256 = {
    "ml-100k": "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    "ml-latest-small": "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
}

_CHUNK = 1 << 20


def _sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _zip_name(url: str) -> str:
    name = pathlib.PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    return name or "download.zip"


def _unsafe_reason(name: str) -> Optional[str]:
    if not name:
        return "empty name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "'..' component"
    if "\x00" in name:
        return "NUL byte in name"
    return None


def _safe_extract(zip_path: pathlib.Path, dest_dir: pathlib.Path) -> list:
    """Extract every member under ``dest_dir``; refuse members that would escape it."""
    root = dest_dir.resolve()
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            for info in infos:
                reason = _unsafe_reason(info.filename)
                mode = info.external_attr >> 16
                if reason is None and stat.S_ISLNK(mode):
                    reason = "symbolic link"
                if reason is None:
                    target = (root / info.filename).resolve()
                    if target != root and root not in target.parents:
                        reason = "path outside the destination folder"
                if reason is not None:
                    raise DataError(
                        f"{zip_path}: refusing to extract member {info.filename!r} ({reason}); "
                        "the archive is not a genuine release",
                        path=zip_path,
                    )
            names = []
            for info in infos:
                target = root / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".part")
                with zf.open(info) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
                os.replace(tmp, target)
                names.append(info.filename)
            return names
    except zipfile.BadZipFile as e:
        raise DataError(f"{zip_path}: not a valid zip archive ({e})", path=zip_path) from None


def _top_folder(dest_dir: pathlib.Path, members: list) -> pathlib.Path:
    tops = {re.split(r"[/\\]", m, maxsplit=1)[0] for m in members}
    if len(tops) == 1 and all(re.search(r"[/\\]", m) for m in members):
        return dest_dir / tops.pop()
    return dest_dir


def fetch_and_extract(
    url: str,
    dest_dir: PathLike,
    *,
    sha256: Optional[str] = None,
    manual_folder: Optional[PathLike] = None,
    timeout: float = 60.0,
) -> pathlib.Path:
    """Download the zip at ``url`` into ``dest_dir``, verify it and extract it there.

    Steps: if a marker file ``dest_dir/.<zip>.extracted.json`` records a previous
    extraction with the same hash and its files are still there, nothing is done.
    Otherwise the zip (reused if ``dest_dir/<zip>`` already exists, e.g. placed by hand,
    else downloaded to a temporary file and renamed into place atomically) is checked
    against ``sha256`` when given (a mismatch raises :class:`DataError` naming both hashes,
    and the bad file is deleted) and extracted, refusing absolute paths, ``..`` members and
    links.

    Args:
      url: anything ``urllib.request.urlopen`` opens (``https://``, ``file://``).
      dest_dir: folder for the zip and its extracted files (created if needed).
      sha256: expected hex digest of the zip, or ``None`` to log the computed one.
      manual_folder: the folder named in the offline message as the place to put the
        extracted files by hand (default ``dest_dir``).
      timeout: network timeout in seconds.

    Returns:
      The extracted folder: ``dest_dir/<top>`` when every member lies under one top-level
      folder ``<top>``, else ``dest_dir``.
    """
    dest_dir = pathlib.Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    zip_name = _zip_name(url)
    zip_path = dest_dir / zip_name
    marker = dest_dir / f".{zip_name}.extracted.json"
    expected = sha256.lower() if sha256 else None

    if marker.is_file():
        try:
            record = json.loads(marker.read_text())
            members = list(record["members"])
            done = (expected is None or record["sha256"] == expected) and all(
                (dest_dir / m).exists() for m in members
            )
        except (ValueError, KeyError, TypeError, OSError):
            done = False
        if done:
            log.info("%s already extracted in %s", zip_name, dest_dir)
            return _top_folder(dest_dir, members)
        marker.unlink()

    actual = None
    if zip_path.is_file():
        actual = _sha256_of(zip_path)
        if expected is not None and actual != expected:
            log.warning(
                "%s has sha256 %s, expected %s: deleting it and downloading again",
                zip_path, actual, expected,
            )
            zip_path.unlink()
            actual = None
    if actual is None:
        actual = _download(url, dest_dir, zip_path, expected, manual_folder, timeout)
    if expected is None:
        log.warning("no pinned sha256 for %s; the file has sha256 %s", url, actual)

    try:
        members = _safe_extract(zip_path, dest_dir)
    except DataError:
        zip_path.unlink(missing_ok=True)
        raise
    tmp = marker.with_name(marker.name + ".part")
    tmp.write_text(json.dumps({"url": url, "sha256": actual, "members": members}))
    os.replace(tmp, marker)
    return _top_folder(dest_dir, members)


def _download(url, dest_dir, zip_path, expected, manual_folder, timeout) -> str:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{zip_path.name}.", suffix=".part", dir=dest_dir)
    tmp = pathlib.Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(block)
                    out.write(block)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        folder = pathlib.Path(manual_folder) if manual_folder is not None else dest_dir
        raise DataError(
            f"the release could not be downloaded from {url} ({reason}). Without network "
            f"access, download it elsewhere and place the extracted files in the folder "
            f"{folder} (or place {zip_path.name} itself at {zip_path}).",
            path=zip_path,
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if expected is not None and actual != expected:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"{url}: sha256 mismatch: expected {expected}, got {actual}; the downloaded file "
            "was deleted (a corrupt download or a changed release)",
            path=zip_path,
        )
    os.replace(tmp, zip_path)
    return actual


def download_movielens(name: str, cache_dir: PathLike) -> pathlib.Path:
    """Download and extract MovieLens release ``name`` into ``cache_dir``.

    Returns the release folder (e.g. ``cache_dir/ml-100k``, ``cache_dir/ml-10M100K``). When
    the ratings file is already there (extracted earlier or placed by hand) nothing is
    downloaded.
    """
    if name not in MOVIELENS_LAYOUT:
        raise ValueError(
            f"unknown MovieLens release {name!r}; known: {', '.join(MOVIELENS_LAYOUT)}"
        )
    cache_dir = pathlib.Path(cache_dir)
    folders, filename = MOVIELENS_LAYOUT[name]
    for folder in folders:
        if (cache_dir / folder / filename).is_file():
            return cache_dir / folder
    return fetch_and_extract(
        MOVIELENS_URL.format(name=name),
        cache_dir,
        sha256=MOVIELENS_SHA256.get(name),
        manual_folder=cache_dir / folders[0],
    )
