"""Upload through the kaggle package: credentials first, clear errors, no key printed; the client is replaced."""

import pytest

from solution import make_submission
from solution.core.errors import ArtifactError, ConfigError
from solution.ensemble import upload


class FakeClient:
    def __init__(self, error: Exception | None = None):
        self.calls, self.error = [], error

    def competition_submit(self, file_name, message, competition, quiet=False):
        self.calls.append((file_name, message, competition))
        if self.error:
            raise self.error


class HttpError(Exception):
    def __init__(self, status):
        super().__init__(f"({status}) Reason: refused")
        self.status = status


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle"))
    return tmp_path / "kaggle"


def test_credentials_are_looked_for_before_the_package_is_imported(no_credentials, monkeypatch):
    assert not upload.credentials_found()
    monkeypatch.setattr(upload.importlib.util, "find_spec", lambda name: object())  # "installed"
    with pytest.raises(ConfigError, match="found no Kaggle credentials: put the API token .*kaggle.json"):
        upload.kaggle_client()
    no_credentials.mkdir()
    (no_credentials / "kaggle.json").write_text('{"username": "u", "key": "SECRET"}')
    assert upload.credentials_found()


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(upload.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'hpa-solution\[kaggle\]'"):
        upload.kaggle_client()


def test_submit_sends_the_file_message_and_slug(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("Id,Predicted\na,0\n")
    client = FakeClient()
    said = upload.submit(path, "my run", "some-slug", client=client)
    assert client.calls == [(str(path), "my run", "some-slug")] and said.startswith("submitted")


def test_dry_run_sends_nothing(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("Id,Predicted\na,0\n")
    client = FakeClient()
    said = upload.submit(path, "m", "slug", dry_run=True, client=client)
    assert client.calls == [] and said.startswith("dry run: would submit") and "sha256" in said


@pytest.mark.parametrize(
    "error, match",
    [
        (HttpError(404), "no competition 'slug' on Kaggle"),
        (HttpError(403), "accept the rules of 'slug'"),
        (ConnectionError("reset"), "network failure"),
    ],
)
def test_failures_are_clear_and_never_print_the_key(tmp_path, monkeypatch, error, match):
    monkeypatch.setenv("KAGGLE_KEY", "SECRET")
    path = tmp_path / "sub.csv"
    path.write_text("Id,Predicted\na,0\n")
    with pytest.raises(ArtifactError, match=match) as err:
        upload.submit(path, "m", "slug", client=FakeClient(error))
    assert "SECRET" not in str(err.value)


def test_make_submission_submit_uses_the_client(trained, monkeypatch, capsys):
    client = FakeClient()
    monkeypatch.setattr(upload, "kaggle_client", lambda: client)
    monkeypatch.setattr(make_submission, "submit", lambda *a: upload.submit(*a, client=client))
    make_submission.main(["--source", "tiny_effnet", "--submit", "-m", "hello", "--competition", "c-slug"])
    assert client.calls == [("submissions/tiny_effnet.csv", "hello", "c-slug")]
    make_submission.main(["--source", "tiny_effnet", "--submit", "--dry-run"])
    assert len(client.calls) == 1 and "dry run: would submit submissions/tiny_effnet.csv" in capsys.readouterr().out
