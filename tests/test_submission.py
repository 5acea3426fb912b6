import numpy as np
import pandas as pd
import pytest

from solution.artifacts import submissions as submission
from solution.core.errors import KitError


def write_sample(path, ids):
    pd.DataFrame({"Id": ids, "Predicted": ["0"] * len(ids)}).to_csv(path, index=False)


@pytest.mark.parametrize(
    "rows, match",
    [
        ([("b", "1"), ("a", "2")], "Ids differ"),
        ([("a", "1 29"), ("b", "")], r"sub.csv:2: bad label '29'"),
    ],
)
def test_validate_submission_catches_bad_files(tmp_path, rows, match):
    write_sample(tmp_path / "sample.csv", ["a", "b"])
    pd.DataFrame(rows, columns=["Id", "Predicted"]).to_csv(tmp_path / "sub.csv", index=False)
    with pytest.raises(KitError, match=match):
        submission.validate_submission(tmp_path / "sub.csv", tmp_path / "sample.csv")


def test_valid_submission_with_empty_prediction(tmp_path):
    write_sample(tmp_path / "sample.csv", ["a", "b"])
    pd.DataFrame([("a", "0 27"), ("b", "")], columns=["Id", "Predicted"]).to_csv(tmp_path / "sub.csv", index=False)
    submission.validate_submission(tmp_path / "sub.csv", tmp_path / "sample.csv")


def test_format_labels():
    pred = np.zeros((2, 28), dtype=np.uint8)
    pred[0, [0, 5, 27]] = 1
    assert submission.format_labels(pred) == ["0 5 27", ""]
