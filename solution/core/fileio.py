"""Atomic file writes, JSON reading and provenance: the bottom of the kit, importable by every module.

Every artifact is written to a temporary name in its folder and renamed into
place, so a killed run leaves either the old file or the new one, never half of
one. Nothing here imports another kit module but the error types.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from solution.core.errors import ArtifactError, LockedError

PROVENANCE_PACKAGES = (
    "torch",
    "timm",
    "segmentation-models-pytorch",
    "albumentations",
    "lightgbm",
    "numpy",
    "pandas",
    "numba",
)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    An ``OSError`` that names no file or the temporary one (a full disk, as pyarrow and matplotlib report it:
    "Error writing bytes to file") is raised again naming ``path``, so the user learns which file failed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from exc
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from a teammate
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename not in (None, tmp):
            raise
        raise _naming(exc, path) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: Path | str, mark: str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; if the block succeeds, it replaces ``path`` whole.

    An existing ``path`` is replaced only when it holds the file ``mark`` (the writer's own folder, such as a
    bundle's manifest), else refused before anything is written. The old folder is moved aside, the new one
    renamed in, then the old removed: a kill leaves the old or the new folder at ``path`` (or, between the
    two renames, the old one beside it as ``.<name>.*.old``), never a mix; a failed block leaves ``path`` as
    it was.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not (path.is_dir() and (path / mark).is_file()):
        raise ArtifactError(f"{path} exists and holds no {mark}: not the kit's to replace; remove it or name another")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` again (its errno, hence its subclass) with ``path`` as the file it names."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_hash(path: Path | str) -> str:
    """SHA-256 of a file's bytes (prediction sets record the hash of each of their files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def atomic_write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_csv(path: Path | str, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def atomic_write_parquet(path: Path | str, df: pd.DataFrame) -> str:
    """Write ``df`` to ``path`` atomically; returns the ``file_hash`` of the bytes written, taken before the
    rename, so that a manifest records this process's file even if another one renames over it."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
        return file_hash(tmp)


@contextmanager
def exclusive(path: Path | str, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an advisory lock on ``path`` (created, holding our PID) for the block.

    With ``wait`` a second process waits its turn (e.g. building one cache);
    without it, it stops at once with an error that names ``what`` and the
    process that holds it (e.g. two trainings of one fold). The lock goes with
    the process, so a killed run never leaves a stale one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise LockedError(f"{what} is in use by process {holder} (lock {path}); wait for it or stop it") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_json(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc}); delete it and rerun the stage that writes it") from exc


def run_info() -> dict[str, Any]:
    """Package versions and git commit, recorded in every manifest."""
    versions: dict[str, str | None] = {}
    for pkg in PROVENANCE_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        git = ["git", "rev-parse", "HEAD"]
        commit = subprocess.run(
            git, capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"packages": versions, "git_commit": commit}
