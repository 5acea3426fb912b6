"""HPAv18 external images in the competition layout: ``python -m solution.external --csv LIST --out DIR``.

LIST is an ``Id,Target`` file like the competition's train.csv (e.g. the
community HPAv18RBGY_wodpl.csv), with Ids ``{antibody}_{plate}_{well}_{field}``
such as ``10580_1610_C1_1``. Each stain of an Id is an RGB JPEG at
``{base}/{antibody}/{plate}_{well}_{field}_{stain}.jpg``. Every file is
fetched in a thread pool, reduced to its
stain's plane by the layout's rule (``stain_plane``: red from R, green from G,
blue from B, yellow from the mean of R and G), area-resized to ``--size`` and
written as ``DIR/train/{Id}_{stain}.png``; ``DIR/train.csv`` lists the Ids
whose four stains are all there. A dataset written this way has no test split:
open it with ``solution.data.layout.open_train_only``.

Network errors, timeouts, 5xx answers, 408/429, and truncated or undecodable
bodies are retried ``--retries`` times with exponential backoff (1, 2, 4 s);
other client errors (404) fail at once. ``--timeout`` bounds each socket read;
``--deadline`` bounds each attempt at a file as a whole (connecting, headers and
body: a server that sends a byte a second cannot hold a file for a day), by
shutting its socket down when it passes. A file over ``--max-mib`` MiB (by its
Content-Length, or as its body arrives) fails at once, unread, as does an image
beyond the layout's pixel limit (``images.MAX_PIXELS``, by its header). Ctrl-C stops the
fetches in flight at once (their sockets too), cancels the queued ones and keeps
every PNG already written; a rerun resumes.

Resumable: a stain whose PNG exists is not fetched again, so a rerun only
fetches what is missing. Every PNG is written under a temporary name in its
folder and renamed, so an interrupted run never leaves half a file (a killed
one may leave a temporary, which the next run removes). An Id that
still fails after its retries is listed with the reason in ``DIR/failed.csv``,
left out of train.csv, and makes the command exit with status 1; its stains
that did arrive are kept for the next run. ``DIR/external.json``, written first, marks the folder as the
downloader's and records the image size: a rerun at another size is refused rather than mixing sizes, and a
folder with files but no mark (e.g. the competition dataset, whose train.csv would be replaced) is refused.
"""

from __future__ import annotations

import http.client
import io
import logging
import re
import socket
import threading
import urllib.error
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from solution.core.errors import DatasetError, KitError
from solution.core.fileio import atomic_path, atomic_write_csv, atomic_write_json, read_json
from solution.core.tables import parse_target, read_rows
from solution.data.images import check_pixels, stain_plane
from solution.data.layout import STAINS

log = logging.getLogger(__spec__.name)

DEFAULT_BASE_URL = "http://v18.proteinatlas.org/images"
ID_PATTERN = re.compile(r"[A-Za-z0-9]+(_[A-Za-z0-9]+){3}")
META_FILE = "external.json"
FAILED_FILE = "failed.csv"
RETRIED_HTTP_CODES = (408, 429)  # of the 4xx client errors, only timeouts and rate limits heal on retry
DEFAULT_DEADLINE = 120.0  # seconds for one whole file (an HPAv18 JPEG is a few MB)
DEFAULT_MAX_MIB = 64  # the largest file accepted, in MiB
CHUNK = 1 << 16  # bytes read at a time, so that the size limit holds while a body arrives


@dataclass(frozen=True)
class Entry:
    image_id: str
    target: str

    def url(self, base_url: str, stain: str) -> str:
        antibody, rest = self.image_id.split("_", 1)
        return f"{base_url.rstrip('/')}/{antibody}/{rest}_{stain}.jpg"


@dataclass(frozen=True)
class Report:
    """What a download run did: Ids fetched now, Ids already complete, failed Ids with the reason."""

    fetched: list[str]
    skipped: list[str]
    failed: dict[str, str]


class FetchError(Exception):
    """A stain that could not be fetched after its retries; its Id goes to failed.csv."""


class FileTooLarge(Exception):
    """A body beyond the size limit: not retried (the file will not shrink)."""


class Stopped(Exception):
    """The run was interrupted (Ctrl-C): the fetch gave up at once."""


def read_list(path: Path | str) -> list[Entry]:
    """The Ids and Targets of an ``Id,Target`` list; a malformed row or Id is an error naming its line."""
    path = Path(path)
    entries = []
    for line, image_id, target in read_rows(path, ("Id", "Target")):
        if not ID_PATTERN.fullmatch(image_id):
            raise DatasetError(
                f"{path}:{line}: Id {image_id!r} is not of the form antibody_plate_well_field (e.g. 10580_1610_C1_1)"
            )
        parse_target(target, f"{path}:{line}")
        entries.append(Entry(image_id, target))
    return entries


def png_path(out_dir: Path, image_id: str, stain: str) -> Path:
    return out_dir / "train" / f"{image_id}_{stain}.png"


def _claim(out_dir: Path, size: int, base_url: str) -> None:
    """Mark ``out_dir`` as the downloader's with ``external.json`` (its first file, recording the image size), or
    check an earlier run's mark. A folder with files but no mark (the competition dataset, say) is refused: the
    download would replace its train.csv. Images of another size are refused rather than mixed."""
    meta_path = out_dir / META_FILE
    if meta_path.is_file():
        earlier = read_json(meta_path).get("size")
        if earlier != size:
            raise DatasetError(
                f"{out_dir} holds images of {earlier} px; rerun with --size {earlier} or use another folder"
            )
        return
    held = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if held:
        raise DatasetError(
            f"--out {out_dir}: holds files the downloader did not write ({', '.join(held[:3])}; no {META_FILE}), "
            f"and the download would replace its train.csv: give a new or empty folder"
        )
    atomic_write_json(meta_path, {"size": size, "base_url": base_url})


def _is_transient(exc: Exception) -> bool:
    """Worth retrying: network and server errors, timeouts, truncated or undecodable payloads; not an image
    the kit refuses (beyond the pixel limit: a ``KitError``)."""
    if isinstance(exc, KitError):
        return False
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in RETRIED_HTTP_CODES
    return isinstance(exc, (OSError, http.client.HTTPException, ValueError))


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked on it, in whichever thread
    except OSError:  # already closed
        pass


class Deadline:
    """One attempt's time limit: when it passes, or on ``expire()`` (Ctrl-C), the attempt's sockets are shut
    down, so a read blocked on them returns at once; a socket watched after that is shut at once."""

    def __init__(self, seconds: float) -> None:
        self.expired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self.expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
        if self.expired.is_set():
            _shut(sock)

    def expire(self) -> None:
        self.expired.set()
        with self._lock:
            for sock in self._sockets:
                _shut(sock)


class _WatchedHTTPConnection(http.client.HTTPConnection):
    """A connection whose socket its ``Deadline`` watches from the moment it is connected."""

    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        super().connect()
        self.deadline.watch(self.sock)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, http.client.HTTPSConnection):
    """The same over TLS: ``super().connect()`` is HTTPS's (connect, then the handshake); the TLS socket is watched."""


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(partial(_WatchedHTTPConnection, deadline=self.deadline), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(partial(_WatchedHTTPSConnection, deadline=self.deadline), req)


def _read_body(response: http.client.HTTPResponse, limit: int) -> bytes:
    """The whole body; ``FileTooLarge`` beyond ``limit`` bytes (by Content-Length, unread, or as it arrives)."""
    declared = response.headers.get("Content-Length", "")
    length = int(declared) if declared.isdigit() else None
    too_large = f"larger than the --max-mib limit of {limit / 2**20:g} MiB"
    if length is not None and length > limit:
        raise FileTooLarge(f"{too_large} ({length} bytes declared)")
    data = bytearray()
    while chunk := response.read(CHUNK):
        data += chunk
        if len(data) > limit:
            raise FileTooLarge(too_large)
    if length is not None and len(data) < length:  # read(amt) returns short at a closed connection
        raise http.client.IncompleteRead(bytes(data), length - len(data))
    return bytes(data)


@dataclass(frozen=True)
class Fetcher:
    """Fetches stains into ``out_dir/train`` with one run's settings; ``halt()`` stops it at once."""

    out_dir: Path
    size: int
    base_url: str
    timeout: float
    retries: int
    backoff: float
    deadline: float = DEFAULT_DEADLINE
    max_bytes: int = DEFAULT_MAX_MIB << 20
    stop: threading.Event = field(default_factory=threading.Event)
    _running: set[Deadline] = field(default_factory=set, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def halt(self) -> None:
        """Ctrl-C: shut the sockets of the fetches in flight and start no more, not even a retry."""
        with self._lock:
            self.stop.set()
            for running in self._running:
                running.expire()

    def fetch(self, url: str) -> bytes:
        """One attempt at one file, within ``deadline`` seconds and ``max_bytes`` bytes."""
        with Deadline(self.deadline) as deadline:
            with self._lock:
                if self.stop.is_set():
                    raise Stopped
                self._running.add(deadline)
            try:
                opener = urllib.request.build_opener(_WatchedHTTPHandler(deadline), _WatchedHTTPSHandler(deadline))
                with opener.open(url, timeout=self.timeout) as response:
                    data = _read_body(response, self.max_bytes)
            except Exception as exc:  # what a shut socket raised is told by why it was shut
                self._check_cut(deadline, exc)
                raise
            finally:
                with self._lock:
                    self._running.discard(deadline)
            self._check_cut(deadline)  # headers cut short by the shutdown can read as a whole, empty answer
            return data

    def _check_cut(self, deadline: Deadline, cause: Exception | None = None) -> None:
        """Raise why an attempt's socket was shut, if it was: Ctrl-C, or its deadline."""
        if self.stop.is_set():
            raise Stopped from cause
        if deadline.expired.is_set():
            raise TimeoutError(f"no whole file within the --deadline of {self.deadline:g} s") from cause

    def plane(self, url: str, stain: str) -> np.ndarray:
        """One stain: download, decode, reduce to the stain's plane, area-resize to (size, size)."""
        data = self.fetch(url)
        check_pixels(io.BytesIO(data), url)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
        if image is None:
            raise ValueError(f"not a decodable image ({len(data)} bytes)")
        return cv2.resize(stain_plane(image, stain, url), (self.size, self.size), interpolation=cv2.INTER_AREA)

    def save(self, entry: Entry, stain: str) -> None:
        """Fetch one stain, retrying transient failures with exponential backoff, and write its PNG atomically."""
        url = entry.url(self.base_url, stain)
        for attempt in range(self.retries + 1):
            try:
                plane = self.plane(url, stain)
                break
            except Stopped:
                raise
            except Exception as exc:  # sorted into transient and permanent just below
                if attempt == self.retries or not _is_transient(exc):
                    raise FetchError(f"{stain}: {exc} ({url}, {attempt + 1} attempt(s))") from exc
                if self.stop.wait(self.backoff * 2**attempt):
                    raise Stopped from exc
        ok, png = cv2.imencode(".png", plane)
        if not ok:
            raise FetchError(f"{stain}: could not encode a PNG")
        with atomic_path(png_path(self.out_dir, entry.image_id, stain)) as tmp:
            tmp.write_bytes(png.tobytes())


def download(
    csv_path: Path | str,
    out_dir: Path | str,
    size: int = 512,
    workers: int = 16,
    base_url: str = DEFAULT_BASE_URL,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
    deadline: float = DEFAULT_DEADLINE,
    max_bytes: int = DEFAULT_MAX_MIB << 20,
) -> Report:
    """Fetch every missing stain of the list into ``out_dir``; write train.csv (complete Ids) and failed.csv.

    ``timeout`` bounds each socket operation, ``deadline`` each attempt at a file, ``max_bytes`` each file;
    a transient failure waits ``backoff * 2**attempt`` seconds. Ctrl-C stops at once and propagates.
    """
    if not base_url.startswith(("http://", "https://")):
        raise DatasetError(f"--base-url must be an http:// or https:// URL, got {base_url!r}")
    entries = read_list(csv_path)
    out_dir = Path(out_dir)
    _claim(out_dir, size, base_url)
    (out_dir / "train").mkdir(exist_ok=True)
    for stale in (out_dir / "train").glob(".*.tmp"):  # left by a killed run
        stale.unlink()
    missing = {e.image_id: [s for s in STAINS if not png_path(out_dir, e.image_id, s).is_file()] for e in entries}
    fetcher = Fetcher(out_dir, size, base_url, timeout, retries, backoff, deadline, max_bytes)
    errors = _fetch_all(fetcher, [(e, s) for e in entries for s in missing[e.image_id]], workers)
    failed = {e.image_id: "; ".join(sorted(errors[e.image_id])) for e in entries if e.image_id in errors}
    _write_lists(out_dir, entries, failed)
    return Report(
        fetched=[e.image_id for e in entries if missing[e.image_id] and e.image_id not in failed],
        skipped=[e.image_id for e in entries if not missing[e.image_id]],
        failed=failed,
    )


def _fetch_all(fetcher: Fetcher, todo: list[tuple[Entry, str]], workers: int) -> dict[str, list[str]]:
    """Fetch every (entry, stain) in a thread pool; the reasons of the failures, by Id.

    Any other error (or Ctrl-C) halts the fetches in flight at once, cancels the queued ones, and
    propagates; the PNGs already written stay (each was renamed into place whole).
    """
    errors: dict[str, list[str]] = defaultdict(list)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        jobs = {pool.submit(fetcher.save, entry, stain): entry.image_id for entry, stain in todo}
        for job in tqdm(as_completed(jobs), total=len(jobs), desc="downloading HPAv18 stains"):
            try:
                job.result()
            except FetchError as exc:
                errors[jobs[job]].append(str(exc))
    except BaseException:
        fetcher.halt()
        raise
    finally:
        pool.shutdown(cancel_futures=True)  # after halt() the running fetches end at once
    return errors


def _write_lists(out_dir: Path, entries: list[Entry], failed: dict[str, str]) -> None:
    complete = [e for e in entries if e.image_id not in failed]
    atomic_write_csv(
        out_dir / "train.csv",
        pd.DataFrame({"Id": [e.image_id for e in complete], "Target": [e.target for e in complete]}),
    )
    failed_path = out_dir / FAILED_FILE
    if failed:
        atomic_write_csv(failed_path, pd.DataFrame({"Id": list(failed), "reason": list(failed.values())}))
    else:
        failed_path.unlink(missing_ok=True)  # a list from an earlier run would be stale
