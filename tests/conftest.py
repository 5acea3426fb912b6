import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "hpav18"


@pytest.fixture(scope="session")
def tiny_dataset_master(tmp_path_factory) -> Path:
    """A tiny synthetic dataset in the competition layout, generated once per session."""
    from solution.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("master") / "data", n_train=40, n_test=12, size=32, seed=3)


@pytest.fixture
def tiny_dataset(tiny_dataset_master, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may damage."""
    return Path(shutil.copytree(tiny_dataset_master, tmp_path / "data"))


@pytest.fixture
def hpav18_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"HPAv18 fixture images not found at {FIXTURES}")
    return FIXTURES
