"""Upload of a submission, and its score, through the official ``kaggle`` client (2.x, on kagglesdk).

The set-up scripts install the client (the ``dev`` extra; by hand ``pip install -e '.[kaggle]'``, which adds
``six``: the client imports it without declaring it). How the kit uses the client, and why:

- Credentials are the client's own: the kit imports it and calls its ``authenticate``, which tries an access
  token (``KAGGLE_API_TOKEN``, ``~/.kaggle/access_token``), then a username and key (``KAGGLE_USERNAME`` and
  ``KAGGLE_KEY``, or the ``kaggle.json`` in ``KAGGLE_CONFIG_DIR``, default ``~/.kaggle``), then the OAuth login
  of ``kaggle auth login`` (``~/.kaggle/credentials.json``). Finding none it can use, it prints its help and
  exits: the kit keeps the help and turns the exit into an error naming those places. (Importing the package
  authenticates once already and goes on when that fails.)
- While the kit talks to Kaggle, every HTTP request of the process is sent once, with ``timeout`` seconds to
  connect and for each read (``requests``' adapter is wrapped for the time): the client sets no timeout, and
  retries the file's upload ten times with pauses of up to two minutes.
- ``competition_submit`` reports a failed upload of the file (its PUT answered 403, 500, 503, or not at all)
  through the message it returns, not by raising: the kit checks that message and reports the PUT's answer.
- Each HTTP status gets its advice with Kaggle's own message quoted; a JSON body's ``code`` counts as the
  status (the client raises on it even under HTTP 200). Messages quote Kaggle's answers, never a request or a
  credential, so the key is never printed or written.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from solution.artifacts.submissions import check_out, latest_upload, record_upload, upload_record
from solution.core.errors import ArtifactError, ConfigError
from solution.core.fileio import file_hash
from solution.core.workspace import SUBMISSIONS_DIR

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__spec__.name)

COMPETITION = "human-protein-atlas-image-classification"
TIMEOUT = 30.0  # seconds Kaggle has to accept each connection and to send each part of an answer
WAIT = 900.0  # --wait without a number: Kaggle scores an HPA submission within minutes
POLL = 10.0  # seconds between two looks at the submissions while waiting for the score
SETTINGS = "https://www.kaggle.com/settings (API > Generate New Token)"  # where a user makes a token
NEED_CLIENT = (
    "--submit and --status need the kaggle client, which does not import here ({}): "
    "pip install -e '.[kaggle]' in the kit's folder installs it (the set-up scripts do)"
)
CALLS = {  # the client's API calls the kit makes, in words
    "IntrospectToken": "checking the access token",
    "StartSubmissionUpload": "starting the upload",
    "CreateSubmission": "creating the submission",
    "ListSubmissions": "listing the submissions",
}
TOKEN_PLACES = {"access_token": "~/.kaggle/access_token"}  # kagglesdk's names of where it found a token


@dataclass(frozen=True)
class UploadOptions:
    """How to talk to Kaggle: seconds per request, whether and how long to wait for the score, or a dry run."""

    timeout: float = TIMEOUT
    wait: float | None = None  # seconds to wait for the score; None: do not wait
    poll: float = POLL
    dry_run: bool = False


@dataclass(frozen=True)
class Submission:
    """One of the competition's submissions, as Kaggle lists it."""

    ref: int
    date: str
    status: str  # PENDING, COMPLETE or ERROR
    public_score: float | str | None  # Kaggle's text where it is not a number
    description: str
    error: str


@dataclass(frozen=True)
class Exchange:
    """A request the client sent, and the answer or the exception that came instead."""

    request: requests.PreparedRequest
    answer: requests.Response | Exception


def _describe(path: Path, message: str, competition: str) -> str:
    """What an upload sends, in words: the file, its size and hash, the competition and the message."""
    return f"{path} ({path.stat().st_size} bytes, sha256 {file_hash(path)}) to {competition!r} with message {message!r}"


def _status_command(competition: str, out: Path) -> str:
    """The command that shows the score of ``out`` later."""
    flags = "" if competition == COMPETITION else f" --competition {competition}"
    if out.parent != SUBMISSIONS_DIR:
        flags += f" --out {out}"
    return f"python -m solution.make_submission --status{flags}"


@contextlib.contextmanager
def _one_try_each(timeout: float, exchanges: list[Exchange]) -> Iterator[None]:
    """For the block, every request of the process through ``requests`` is sent once (requests' own default),
    with ``timeout`` seconds to connect and for each read, and recorded in ``exchanges``."""
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    send = HTTPAdapter.send

    def bounded(adapter: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        adapter.max_retries = Retry(0, read=False)
        try:
            answer = send(adapter, request, **{**kwargs, "timeout": timeout})
        except Exception as exc:  # recorded, and raised on as it was
            exchanges.append(Exchange(request, exc))
            raise
        exchanges.append(Exchange(request, answer))
        return answer

    HTTPAdapter.send = bounded  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        HTTPAdapter.send = send  # type: ignore[method-assign]


def _relay(printed: str) -> None:
    """The client's prints of a call that succeeded (e.g. its warning about a key readable by others), once each."""
    for line in dict.fromkeys(filter(None, (line.strip() for line in printed.splitlines()))):
        log.warning(f"kaggle: {line}")


def _token_place() -> str | None:
    """Where the client finds its access token (``KAGGLE_API_TOKEN``, ``~/.kaggle/access_token``), if anywhere."""
    from kagglesdk.kaggle_env import get_access_token_from_env

    token, place = get_access_token_from_env()
    return TOKEN_PLACES.get(place, place) if token else None


def _no_credentials(api: Any) -> str:
    """Why the client found no credentials it could use, and where to put them."""
    token = _token_place()
    if token:
        return f"Kaggle did not accept the access token in {token} (expired or revoked): make a new one at {SETTINGS}"
    return (
        f"found no Kaggle credentials where the kaggle client looks: make an API token at {SETTINGS} and set "
        "KAGGLE_API_TOKEN to it or save it in ~/.kaggle/access_token; or put a kaggle.json with username and key in "
        f"{Path(api.config).parent}/ (or set KAGGLE_USERNAME and KAGGLE_KEY); or run `kaggle auth login`"
    )


def _credentials_in_use(api: Any | None) -> str:
    """The credentials the client sends, in words: those it chose, or before it chose the token it checks."""
    method = None if api is None else api.config_values.get("auth_method")
    if api is not None and method == "LEGACY_API_KEY":
        return "KAGGLE_USERNAME/KAGGLE_KEY" if "KAGGLE_KEY" in os.environ else str(api.config)
    if method == "OAUTH":
        return "the login of `kaggle auth login` (~/.kaggle/credentials.json)"
    return _token_place() or "the Kaggle credentials"


def _authenticated_api() -> Any:
    """The client's ``KaggleApi``, authenticated by its own lookup of credentials."""
    with contextlib.redirect_stdout(io.StringIO()):  # the import authenticates too, printing its help on failure
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError as exc:
            raise ConfigError(NEED_CLIENT.format(exc)) from None
    api = KaggleApi()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        try:
            api.authenticate()
        except SystemExit:  # its help is printed: the kit says instead what is missing
            raise ConfigError(_no_credentials(api)) from None
    _relay(printed.getvalue())
    return api


def _status_and_message(response: requests.Response) -> tuple[int, str]:
    """The status of an answer as the client reads it (a JSON body's ``code`` of 400 or more counts, even under
    HTTP 200) and Kaggle's message: the body's ``message``, else the start of its text, else the HTTP reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    code, message = (body.get("code"), body.get("message")) if isinstance(body, dict) else (None, None)
    status = code if isinstance(code, int) and code >= 400 else response.status_code
    text = message if isinstance(message, str) and message.strip() else response.text
    return status, " ".join(text.split())[:300] or response.reason or "no message"


def _call(request: requests.PreparedRequest) -> str:
    """What a request was for, in words."""
    if request.method == "PUT":
        return "uploading the file"
    name = urlsplit(request.url or "").path.rsplit("/", 1)[-1]
    return CALLS.get(name, name)


def _unanswered(exc: Exception, call: str, timeout: float) -> str | None:
    """A timeout or a connection failure, in words; None for anything else."""
    import requests

    if isinstance(exc, requests.Timeout):
        return f"Kaggle did not answer {call} within {timeout:g} s (--timeout): try again later, or give it longer"
    if isinstance(exc, requests.ConnectionError):
        return (
            f"could not connect to Kaggle for {call} ({type(exc).__name__}): check the network connection "
            "(and any proxy), then try again"
        )
    return None


def _refusal(status: int, message: str, call: str, competition: str, credentials: str) -> str:
    """Kaggle's refusal of an API call, with the advice its status calls for."""
    said = f"(Kaggle answered {status}: {message})"
    if status == 401:
        return f"Kaggle refused the credentials from {credentials} {said}: make a new API token at {SETTINGS}"
    if status == 403:
        return (
            f"Kaggle refused {call} for {competition!r} {said}: accept the competition's rules at "
            f"https://www.kaggle.com/competitions/{competition}/rules with this account, then try again"
        )
    if status == 404:
        return f"Kaggle has no competition {competition!r} {said}: check --competition"
    if status >= 500:
        return f"Kaggle failed at {call} {said}: try again later"
    return f"Kaggle refused {call} {said}"


def _score(text: str | None) -> float | str | None:
    """Kaggle's public score (text in its answer) as a number; None while there is none."""
    try:
        return float(text) if text else None
    except ValueError:
        return text


class Kaggle:
    """The authenticated client, talking about one competition (from ``connect``)."""

    def __init__(self, api: Any, competition: str, timeout: float, exchanges: list[Exchange]) -> None:
        self.api, self.competition, self.timeout, self.exchanges = api, competition, timeout, exchanges

    def submit(self, path: Path, message: str) -> tuple[int, str]:
        """Upload ``path`` with ``message``: the new submission's ref and Kaggle's message; a failed upload of the
        file raises ``ArtifactError`` with the answer to its PUT."""
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            done = self.api.competition_submit(str(path), message, self.competition, quiet=True)
        if done.message == self.api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
            raise ArtifactError(f"nothing was submitted: {self._failed_upload(path, printed.getvalue())}")
        _relay(printed.getvalue())
        return done.ref, done.message

    def _failed_upload(self, path: Path, printed: str) -> str:
        """Why the upload of the file failed: its PUT's answer, or the client's words when it sent none."""
        put = self.exchanges[-1] if self.exchanges and self.exchanges[-1].request.method == "PUT" else None
        if put is None:
            return f"the kaggle client could not upload {path} ({' '.join(printed.split()) or 'it gave no reason'})"
        if isinstance(put.answer, Exception):
            unanswered = _unanswered(put.answer, "uploading the file", self.timeout)
            return unanswered or f"uploading {path} failed ({type(put.answer).__name__})"
        status, text = _status_and_message(put.answer)
        return f"the upload of {path} was refused (Kaggle's storage answered {status}: {text}): try again"

    def submissions(self) -> list[Submission]:
        """The competition's latest submissions (the client's first page: 20), newest first."""
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            listed = self.api.competition_submissions(self.competition)
        _relay(printed.getvalue())
        return [
            Submission(
                ref=s.ref,
                date=s.date.strftime("%Y-%m-%d %H:%M") if s.date else "",
                status=s.status.name,
                public_score=_score(s.public_score),
                description=s.description or "",
                error=s.error_description or "",
            )
            for s in listed or []
            if s is not None
        ]

    def wait_for_score(self, ref: int, wait: float, poll: float) -> Submission | None:
        """Look at the submissions every ``poll`` seconds, at most ``wait`` seconds long, until submission ``ref``
        is scored or failed; None while it is still pending (or not listed yet) then."""
        for look in range(int(wait / poll) + 1):
            if look:
                time.sleep(poll)
            mine = next((s for s in self.submissions() if s.ref == ref), None)
            if mine is not None and mine.status != "PENDING":
                return mine
        return None


@contextlib.contextmanager
def connect(competition: str, timeout: float = TIMEOUT) -> Iterator[Kaggle]:
    """The authenticated client for the block, each request sent once with ``timeout`` seconds; a failure of the
    client inside the block (credentials, an HTTP status, a timeout, the network) comes out as a ``KitError``."""
    try:
        import requests
    except ImportError as exc:
        raise ConfigError(NEED_CLIENT.format(exc)) from None
    exchanges: list[Exchange] = []
    api = None
    with _one_try_each(timeout, exchanges):
        try:
            api = _authenticated_api()
            yield Kaggle(api, competition, timeout, exchanges)
        except (requests.RequestException, json.JSONDecodeError) as exc:
            raise ArtifactError(_explain(exc, exchanges, competition, timeout, _credentials_in_use(api))) from None


def _explain(exc: Exception, exchanges: list[Exchange], competition: str, timeout: float, credentials: str) -> str:
    """A failed call of the client in words (the last exchange is the failed one: the client calls one at a time)."""
    call = _call(exchanges[-1].request) if exchanges else "the first request"
    response = getattr(exc, "response", None)
    if response is None:
        return _unanswered(exc, call, timeout) or f"Kaggle's answer to {call} could not be read ({type(exc).__name__})"
    return _refusal(*_status_and_message(response), call, competition, credentials)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _record_score(out: Path, scored: Submission) -> str:
    """Write Kaggle's verdict on ``scored`` into the sidecar of ``out``: what to print, or ``ArtifactError`` when
    Kaggle could not score it."""
    record_upload(out, {"status": scored.status, "public_score": scored.public_score, "error": scored.error})
    if scored.status == "ERROR":
        raise ArtifactError(f"Kaggle could not score submission {scored.ref}: {scored.error or 'no reason given'}")
    score = "none given" if scored.public_score is None else scored.public_score
    return f"public score {score} (recorded in {out.with_suffix('.json')})"


def submit(out: Path, message: str, competition: str, options: UploadOptions) -> None:
    """Upload the submission ``out``, log Kaggle's message and the submission's ref, and record them in its
    sidecar; with ``options.wait``, wait for the public score and record it too. ``dry_run`` sends nothing."""
    what = _describe(out, message, competition)
    if options.dry_run:
        log.info(f"dry run: would submit {what}")
        return
    with connect(competition, options.timeout) as kaggle:
        ref, said = kaggle.submit(out, message)
        log.info(f"submitted {what}: Kaggle says {said!r} (submission ref {ref})")
        record_upload(out, {"competition": competition, "ref": ref, "submitted_at": _now(), "status": "PENDING"})
        if options.wait is None:
            log.info(f"Kaggle scores it within minutes: {_status_command(competition, out)} shows the score")
            return
        log.info(f"waiting up to {options.wait:g} s for Kaggle to score submission {ref}")
        scored = kaggle.wait_for_score(ref, options.wait, options.poll)
    if scored is None:
        log.info(f"not scored after {options.wait:g} s: {_status_command(competition, out)} shows the score later")
        return
    log.info(f"Kaggle scored submission {ref}: {_record_score(out, scored)}")


def _table(listed: list[Submission], mine: int | None, local: Path | None) -> list[str]:
    """The submissions as lines of a table, the one of ref ``mine`` marked as the upload of ``local``."""
    heading = f"{'ref':>10}  {'submitted (UTC)':<16}  {'status':<8}  {'public':>8}  description"
    lines = ["latest submissions, newest first:", heading]
    for s in listed:
        score = "" if s.public_score is None else str(s.public_score)
        mark = f"  <- {local}" if s.ref == mine else ""
        lines.append(f"{s.ref:>10}  {s.date:<16}  {s.status:<8}  {score:>8}  {s.description}{mark}")
    return lines


def status(competition: str, timeout: float = TIMEOUT, out: Path | None = None) -> None:
    """Log the competition's latest submissions with status and public score, and the line of the newest local
    submission uploaded there (``out`` if given); a verdict Kaggle has given it is recorded in its sidecar."""
    if out is not None:
        check_out(out)
    local = out or latest_upload(SUBMISSIONS_DIR, competition)
    record = upload_record(local, competition) if local else None
    if out is not None and record is None:
        raise ConfigError(f"--out {out}: its sidecar records no upload to {competition!r} (upload it with --submit)")
    with connect(competition, timeout) as kaggle:
        listed = kaggle.submissions()
    ref = record["ref"] if record else None
    for line in _table(listed, ref, local) if listed else [f"no submissions to {competition!r} yet"]:
        log.info(line)
    if local is None or ref is None:
        return
    mine = next((s for s in listed if s.ref == ref), None)
    if mine is None:
        log.info(f"{local} (submission {ref}) is not among the latest {len(listed)}")
    elif mine.status == "PENDING":
        log.info(f"{local} is submission {ref}: not scored yet")
    else:
        log.info(f"{local} is submission {ref}: {_record_score(local, mine)}")
