"""Upload of a submission with the official ``kaggle`` Python package (``pip install 'hpa-solution[kaggle]'``).

The package authenticates when it is imported and ends the whole process when
it finds no credentials, so the kit looks for them first (the places the
package reads, below) and imports it only then. The key is never printed: error
messages quote the API's reply, not the credentials.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol

from solution.core.errors import ArtifactError, ConfigError
from solution.core.fileio import file_hash

COMPETITION = "human-protein-atlas-image-classification"


class Client(Protocol):
    def competition_submit(self, file_name: str, message: str, competition: str, quiet: bool = False) -> Any: ...


def _config_dirs() -> list[Path]:
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return [Path(os.environ["KAGGLE_CONFIG_DIR"])]
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path.home() / ".kaggle", xdg / "kaggle"]


def credentials_found() -> bool:
    """Whether the kaggle package will find credentials: environment variables, kaggle.json or an access token."""
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return True
    return any((d / name).is_file() for d in _config_dirs() for name in ("kaggle.json", "access_token"))


def kaggle_client() -> Client:
    """The authenticated client of the official package (imported here: its import authenticates)."""
    if importlib.util.find_spec("kaggle") is None:
        raise ConfigError(
            "--submit needs the kaggle package: pip install 'hpa-solution[kaggle]' (or pip install kaggle)"
        )
    if not credentials_found():
        places = " or ".join(str(d / "kaggle.json") for d in _config_dirs())
        raise ConfigError(
            f"--submit found no Kaggle credentials: put the API token from kaggle.com > Settings > API in {places}, "
            "or set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)"
        )
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    api.authenticate()
    return api


def _explain(exc: Exception, competition: str) -> str:
    """A user's reading of a failed submit: wrong slug, rules not accepted, network, or the API's own words."""
    status = getattr(exc, "status", None) or getattr(getattr(exc, "response", None), "status_code", None)
    if status == 404:
        return f"no competition {competition!r} on Kaggle (check --competition)"
    if status in (401, 403):
        return (
            f"Kaggle refused the submission: accept the rules of {competition!r} on its web page, and check the token"
        )
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return f"network failure while talking to Kaggle ({type(exc).__name__}); try again later"
    return f"Kaggle upload failed: {type(exc).__name__}: {exc}"


def submit(path: Path, message: str, competition: str, dry_run: bool = False, client: Client | None = None) -> str:
    """Upload ``path`` to ``competition``; with ``dry_run`` say what would be sent and send nothing."""
    what = f"{path} ({path.stat().st_size} bytes, sha256 {file_hash(path)}) to {competition!r} with message {message!r}"
    if dry_run:
        return f"dry run: would submit {what}"
    api = client or kaggle_client()
    try:
        api.competition_submit(file_name=str(path), message=message, competition=competition, quiet=True)
    except Exception as exc:  # the client raises its own HTTP, connection and value errors
        raise ArtifactError(_explain(exc, competition)) from None
    return f"submitted {what}"
