"""The Kaggle round trip with the real ``kaggle`` client: its own code runs, HTTP goes to a stand-in on 127.0.0.1.

With ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` the client sends its API calls to ``http://localhost/api/v1/...``
(it reads the variable when the package is imported: each test imports it afresh), and ``requests`` sends
them through ``http_proxy``: the stand-in is that proxy, so it sees every request the client makes, the PUT
of the file included, and answers as Kaggle would (or not at all).
"""

import base64
import configparser
import json
import os
import socket
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
from conftest import a_sidecar, manifest_of

from solution import folds, make_submission
from solution.artifacts.oof import probs_frame, write_predictions
from solution.core.cli import setup_logging
from solution.core.errors import ArtifactError, ConfigError
from solution.core.fileio import file_hash, read_json
from solution.ensemble import upload

KEY = "SECRET-KEY-0123456789"
USER = "kit-user"
SLUG = "hpa-slug"
REF = 4242
SLEEP = "sleep"  # an answer that never comes (until the test ends, at most 10 s)
SUBMITTED = "Successfully submitted to Human Protein Atlas Image Classification"
ROOT = Path(__file__).resolve().parents[1]


def listed(status: str, score: str = "", error: str = "", ref: int = REF) -> dict:
    """One submission as ListSubmissions answers it."""
    return {
        "ref": ref,
        "date": "2024-05-01T12:00:00.000Z",
        "description": "tiny_effnet f1",
        "status": status,
        "publicScore": score,
        "errorDescription": error,
    }


class StandIn:
    """Kaggle's API as the client sees it: an answer per call (or SLEEP), and every request it received."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, object]] = {
            "IntrospectToken": (200, {"active": True, "username": USER}),
            "StartSubmissionUpload": (200, {"token": "blob-1", "createUrl": "http://localhost/upload/blob-1"}),
            "PUT": (200, {}),
            "CreateSubmission": (200, {"message": SUBMITTED, "ref": REF}),
        }
        self.listings: list[list[dict]] = [[listed("COMPLETE", "0.5")]]  # one per look; the last one repeats
        self.received: list[tuple[str, str, dict, bytes]] = []  # method, call, headers, body
        self.release = threading.Event()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        call = "PUT" if handler.command == "PUT" else urlsplit(handler.path).path.rsplit("/", 1)[-1]
        self.received.append((handler.command, call, dict(handler.headers), body))
        if call in self.answers:
            status, reply = self.answers[call]
        elif call == "ListSubmissions":
            status, reply = 200, {"submissions": self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]}
        else:
            status, reply = 404, {"code": 404, "message": f"no call {call}"}
        if reply == SLEEP:
            self.release.wait(10)
            return
        data = (reply if isinstance(reply, str) else json.dumps(reply)).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html" if isinstance(reply, str) else "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def calls(self) -> list[str]:
        return [call for _, call, _, _ in self.received]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.server.stand_in.answer(self)  # type: ignore[attr-defined]

    do_PUT = do_POST

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stand_in(tmp_path, monkeypatch, capsys):
    """The stand-in, the client pointed at it and credentials in KAGGLE_USERNAME/KAGGLE_KEY, HOME in tmp_path;
    afterwards, the key is in no output and no file outside the credentials' folders."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.stand_in = StandIn()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    for var in list(os.environ):
        if var.startswith("KAGGLE_") or var.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(var)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    for name in [m for m in sys.modules if m == "kaggle" or m.startswith("kaggle.")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, under this environment
    monkeypatch.chdir(tmp_path)
    setup_logging()
    yield server.stand_in  # type: ignore[attr-defined]
    server.stand_in.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    out, err = capsys.readouterr()
    assert KEY not in out + err
    credentials = (tmp_path / "home", tmp_path / "cfg")  # where the tests put the key
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not any(p.is_relative_to(c) for c in credentials)]
    assert not [p for p in written if KEY.encode() in p.read_bytes()]


def a_pair(folder: Path = Path("submissions"), name: str = "sub") -> Path:
    """A submission and its sidecar, as make_submission writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"{name}.csv"
    csv.write_text("Id,Predicted\n00008af0,0 25\n0000a892,\n")
    csv.with_suffix(".json").write_text(json.dumps(a_sidecar(csv_sha256=file_hash(csv))))
    return csv


def printed(capsys) -> str:
    """What the kit printed to stdout since the last look; the key is in neither stdout nor stderr."""
    out, err = capsys.readouterr()
    assert KEY not in out + err
    return out


def sidecar(csv: Path) -> dict:
    return json.loads(csv.with_suffix(".json").read_text())


def send(csv: Path, **options) -> None:
    upload.submit(csv, "my run", SLUG, upload.UploadOptions(**{"timeout": 2.0, **options}))


def test_a_submission_sends_the_file_byte_for_byte_and_prints_kaggles_message_and_ref(stand_in, capsys):
    csv = a_pair()
    send(csv)
    assert stand_in.calls() == ["StartSubmissionUpload", "PUT", "CreateSubmission"]
    (_, _, start_headers, start), (_, _, _, put), (_, _, _, create) = stand_in.received
    assert put == csv.read_bytes()
    assert json.loads(start)["contentLength"] == len(put) and json.loads(start)["competitionName"] == SLUG
    assert json.loads(create)["submissionDescription"] == "my run" and json.loads(create)["blobFileTokens"] == "blob-1"
    assert start_headers["Authorization"] == "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
    out = printed(capsys)
    assert f"submitted {csv} ({len(put)} bytes, sha256 {file_hash(csv)}) to '{SLUG}'" in out
    assert f"Kaggle says '{SUBMITTED}' (submission ref {REF})" in out
    assert f"python -m solution.make_submission --status --competition {SLUG} shows the score" in out
    assert {"competition": SLUG, "ref": REF, "status": "PENDING"}.items() <= sidecar(csv)["kaggle"].items()


@pytest.mark.parametrize(
    "put, said",
    [
        ((403, "<Error><Code>AccessDenied</Code></Error>"), r"refused \(Kaggle's storage answered 403: <Error>"),
        ((500, {"error": "backend"}), r"refused \(Kaggle's storage answered 500: \{\"error\": \"backend\"\}\)"),
        ((503, "busy"), r"refused \(Kaggle's storage answered 503: busy\)"),
        ((0, SLEEP), r"Kaggle did not answer uploading the file within 0.3 s"),
    ],
)
def test_a_refused_or_unanswered_upload_of_the_file_is_an_error_not_a_success(stand_in, capsys, put, said):
    stand_in.answers["PUT"] = put
    csv = a_pair()
    start = time.monotonic()
    with pytest.raises(ArtifactError, match="^nothing was submitted: .*" + said) as failed:
        send(csv, timeout=0.3)
    assert KEY not in str(failed.value)
    assert time.monotonic() - start < 3  # sent once: the client alone would retry ten times
    assert stand_in.calls() == ["StartSubmissionUpload", "PUT"] and sidecar(csv).get("kaggle") is None
    assert "submitted" not in printed(capsys)


@pytest.mark.parametrize(
    "call, answer, said",
    [
        (
            "StartSubmissionUpload",
            (401, {"code": 401, "message": "Unauthenticated"}),
            r"Kaggle refused the credentials from KAGGLE_USERNAME/KAGGLE_KEY \(Kaggle answered 401: "
            r"Unauthenticated\): make a new API token",
        ),
        (
            "StartSubmissionUpload",
            (403, {"code": 403, "message": "You must accept this competition's rules"}),
            r"refused starting the upload for 'hpa-slug' \(Kaggle answered 403: You must accept this "
            r"competition's rules\): accept the competition's rules at "
            r"https://www.kaggle.com/competitions/hpa-slug/rules",
        ),
        (
            "StartSubmissionUpload",
            (404, {"code": 404, "message": "Competition not found"}),
            r"Kaggle has no competition 'hpa-slug' \(Kaggle answered 404: Competition not found\): check --competition",
        ),
        (
            "CreateSubmission",
            (500, "<html><body>Internal Server Error</body></html>"),
            r"Kaggle failed at creating the submission \(Kaggle answered 500: <html><body>Internal Server Error",
        ),
        (
            "CreateSubmission",
            (200, {"code": 400, "message": "Submission has 2 rows, expected 11702"}),
            r"Kaggle refused creating the submission \(Kaggle answered 400: Submission has 2 rows, expected 11702\)$",
        ),
        ("StartSubmissionUpload", (0, SLEEP), r"Kaggle did not answer starting the upload within 0.3 s \(--timeout\)"),
    ],
)
def test_each_answer_of_kaggle_gets_its_advice_with_kaggles_message(stand_in, call, answer, said):
    stand_in.answers[call] = answer
    csv = a_pair()
    start = time.monotonic()
    with pytest.raises(ArtifactError, match=said) as failed:
        send(csv, timeout=0.3)
    assert time.monotonic() - start < 3 and sidecar(csv).get("kaggle") is None and KEY not in str(failed.value)


def test_no_answer_at_all_is_a_connection_failure(stand_in, monkeypatch):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")  # nothing listens there
    with pytest.raises(ArtifactError, match="could not connect to Kaggle for starting the upload"):
        send(a_pair())


def test_the_command_ends_a_failure_with_one_error_line(stand_in, capsys):
    stand_in.answers["ListSubmissions"] = (403, {"code": 403, "message": "You have not joined"})
    with pytest.raises(SystemExit, match=r"^error: Kaggle refused listing the submissions for 'hpa-slug' \(Kaggle "):
        make_submission.main(["--status", "--competition", SLUG])
    assert printed(capsys) == ""


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def oauth_login(home: Path) -> str:
    """What `kaggle auth login` leaves: a refresh token and a live access token."""
    expires = (datetime.now(timezone.utc) + timedelta(hours=6)).isoformat()
    login = {"refresh_token": "r", "access_token": "oauth-token", "access_token_expiration": expires, "username": USER}
    write_json(home / ".kaggle" / "credentials.json", login)
    return "Bearer oauth-token"


@pytest.mark.parametrize("where", ["KAGGLE_CONFIG_DIR/kaggle.json", "KAGGLE_API_TOKEN", "credentials.json"])
def test_credentials_are_the_ones_the_client_reads(stand_in, tmp_path, monkeypatch, capsys, where):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    if where == "KAGGLE_CONFIG_DIR/kaggle.json":
        write_json(tmp_path / "cfg" / "kaggle.json", {"username": USER, "key": KEY})
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
        expected = "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
    elif where == "KAGGLE_API_TOKEN":
        monkeypatch.setenv("KAGGLE_API_TOKEN", KEY)
        expected = f"Bearer {KEY}"
    else:
        expected = oauth_login(tmp_path / "home")
    send(a_pair())
    assert stand_in.received[-1][1] == "CreateSubmission" and stand_in.received[-1][2]["Authorization"] == expected
    readable = "kaggle: Warning: Your Kaggle API key is readable by other users"  # the client's warning, relayed once
    assert printed(capsys).count(readable) == (where == "KAGGLE_CONFIG_DIR/kaggle.json")


@pytest.mark.parametrize(
    "place, said",
    [
        ("nowhere", r"found no Kaggle credentials where the kaggle client looks: .* kaggle.json .* in {home}/.config"),
        ("KAGGLE_CONFIG_DIR/access_token", r"found no Kaggle credentials .* in {home}/cfg/ .* `kaggle auth login`"),
        ("a token Kaggle rejects", r"Kaggle did not accept the access token in KAGGLE_API_TOKEN \(expired or revoked"),
    ],
)
def test_credentials_the_client_cannot_use_give_one_error_and_not_its_help(
    stand_in, tmp_path, monkeypatch, capsys, place, said
):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    if place == "KAGGLE_CONFIG_DIR/access_token":  # the client reads an access token in ~/.kaggle only
        (tmp_path / "home" / "cfg").mkdir()
        (tmp_path / "home" / "cfg" / "access_token").write_text(KEY)
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "home" / "cfg"))
    if place == "a token Kaggle rejects":
        monkeypatch.setenv("KAGGLE_API_TOKEN", KEY)
        stand_in.answers["IntrospectToken"] = (200, {"active": False})
    with pytest.raises(ConfigError, match=said.format(home=tmp_path / "home")) as failed:
        send(a_pair())
    assert KEY not in str(failed.value)
    assert printed(capsys) == "" and "CreateSubmission" not in stand_in.calls()  # no help text of the client


def test_a_token_check_that_never_answers_ends_too(stand_in, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", KEY)
    stand_in.answers["IntrospectToken"] = (0, SLEEP)
    start = time.monotonic()
    with pytest.raises(ArtifactError, match=r"Kaggle did not answer checking the access token within 0.3 s"):
        send(a_pair(), timeout=0.3)
    assert time.monotonic() - start < 3  # the import checks the token once already: two timeouts
    assert stand_in.calls() == ["IntrospectToken", "IntrospectToken"]


@pytest.mark.parametrize(
    "looks, said",
    [
        ([[listed("PENDING")], [listed("COMPLETE", "0.4321")]], "Kaggle scored submission 4242: public score 0.4321"),
        ([[], [listed("PENDING")], [listed("COMPLETE", "0.4321")]], "public score 0.4321"),
    ],
)
def test_wait_looks_until_kaggle_scores_it_and_records_the_score(stand_in, capsys, looks, said):
    stand_in.listings = [*looks]
    csv = a_pair()
    send(csv, wait=5.0, poll=0.05)
    assert said in printed(capsys) and stand_in.calls().count("ListSubmissions") == len(looks)
    assert sidecar(csv)["kaggle"]["public_score"] == 0.4321 and sidecar(csv)["kaggle"]["status"] == "COMPLETE"


def test_wait_is_bounded_and_a_failed_scoring_is_an_error(stand_in, capsys):
    stand_in.listings = [[listed("PENDING")]]
    csv = a_pair()
    send(csv, wait=0.2, poll=0.05)
    assert "not scored after 0.2 s: python -m solution.make_submission --status" in printed(capsys)
    assert stand_in.calls().count("ListSubmissions") == 5  # at 0, 0.05, 0.1, 0.15 and 0.2 s: wait / poll + 1
    stand_in.listings = [[listed("ERROR", error="Submission must have 11702 rows")]]
    with pytest.raises(ArtifactError, match="Kaggle could not score submission 4242: Submission must have 11702 rows"):
        send(a_pair(), wait=1.0, poll=0.05)
    assert sidecar(csv)["kaggle"]["status"] == "ERROR"


def test_status_lists_the_latest_and_records_the_score_of_the_newest_local_upload(stand_in, capsys):
    csv = a_pair()
    send(csv)
    stand_in.listings = [[listed("COMPLETE", "0.61", ref=REF), listed("COMPLETE", "0.55", ref=17)]]
    make_submission.main(["--status", "--competition", SLUG])
    out = printed(capsys)
    assert "latest submissions, newest first:" in out and "4242  2024-05-01 12:00" in out
    assert f"0.61  tiny_effnet f1  <- {csv}\n" in out and "0.55  tiny_effnet f1\n" in out
    assert f"{csv} is submission 4242: public score 0.61 (recorded in {csv.with_suffix('.json')})" in out
    assert sidecar(csv)["kaggle"]["public_score"] == 0.61
    other = a_pair(name="other")
    with pytest.raises(SystemExit, match=f"error: --out {other}: its sidecar records no upload to 'hpa-slug'"):
        make_submission.main(["--status", "--competition", SLUG, "--out", str(other)])


@pytest.fixture
def predicted(stand_in, tiny_dataset_master, tmp_path):
    """The working folder (the current one) with folds and one experiment's predictions: random, not trained."""
    folds.main(["--data", str(tiny_dataset_master)])
    ids = pd.read_csv("folds/folds.csv")["Id"].tolist()
    test_ids = pd.read_csv(tiny_dataset_master / "sample_submission.csv")["Id"].tolist()
    rng = np.random.default_rng(0)
    oof, test = probs_frame(ids, rng.random((len(ids), 28))), probs_frame(test_ids, rng.random((len(test_ids), 28)))
    write_predictions(Path("oof/exp"), oof, test, manifest_of("exp", read_json("folds/folds.json")["folds_hash"]))
    return tmp_path


def test_submit_through_the_command_with_wait(stand_in, predicted, capsys):
    stand_in.listings = [[listed("PENDING")], [listed("COMPLETE", "0.5")]]
    argv = ["--source", "exp", "--submit", "-m", "hello", "--competition", SLUG, "--poll-interval", "0.05"]
    make_submission.main([*argv, "--wait"])
    out = printed(capsys)
    csv = predicted / "submissions" / "exp.csv"
    assert stand_in.received[1][3] == csv.read_bytes() and "Kaggle scored submission 4242: public score 0.5" in out
    assert json.loads(stand_in.received[2][3])["submissionDescription"] == "hello"
    assert sidecar(csv)["kaggle"]["public_score"] == 0.5
    make_submission.main(["--source", "exp", "--submit", "--dry-run"])
    assert "dry run: would submit submissions/exp.csv" in printed(capsys)
    assert stand_in.calls().count("PUT") == 1


@pytest.mark.parametrize("argv", [["--wait", "5"], ["--submit", "--timeout", "0"], ["--submit", "--status"]])
def test_option_mistakes_are_named(argv, capsys):
    with pytest.raises(SystemExit):
        make_submission.main(argv)
    assert "error: " in capsys.readouterr().err


def test_a_client_that_does_not_import_says_how_to_install_it(stand_in, monkeypatch):
    monkeypatch.setitem(sys.modules, "six", None)  # kaggle imports six without declaring it
    with pytest.raises(ConfigError, match=r"need the kaggle client, which does not import here \(.*six.*pip install"):
        send(a_pair())


def test_the_set_up_installs_the_client_and_what_it_imports():
    extras = configparser.ConfigParser()
    extras.read(ROOT / "setup.cfg")
    for extra in ("dev", "kaggle"):
        names = {line.split(">")[0].split("=")[0].strip() for line in extras["options.extras_require"][extra].split()}
        assert {"kaggle", "six"} <= names, extra
    assert '-e "$ROOT[dev]"' in (ROOT / "scripts" / "setup.sh").read_text()


def test_dry_run_sends_nothing(tmp_path, capsys):
    setup_logging()
    csv = a_pair(tmp_path)
    upload.submit(csv, "m", SLUG, upload.UploadOptions(dry_run=True))
    assert f"dry run: would submit {csv} (" in printed(capsys) and sidecar(csv).get("kaggle") is None
