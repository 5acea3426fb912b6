import numpy as np
import pandas as pd
import pytest

from solution import make_submission
from solution.artifacts import submissions as submission
from solution.core.errors import KitError
from solution.core.fileio import read_json
from solution.core.tables import read_class_rates


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


def rates_file(path, rows) -> str:
    path.write_text("class,rate\n" + "".join(f"{c},{r}\n" for c, r in rows))
    return str(path)


@pytest.mark.parametrize(
    "rows, match",
    [
        ([(c, 0.1) for c in range(27)], r"rates.csv: no rate for class 27 \(needs one row per class 0..27\)"),
        ([(c, 0.1) for c in range(27)] + [(28, 0.1)], r"rates.csv:29: bad class '28'"),
        ([(c, 0.1) for c in range(27)] + [(27, 1.5)], r"rates.csv:29: rate '1.5' of class 27 is not a number in \[0"),
        ([(c, 0.1) for c in range(27)] + [(27, "nan")], r"rates.csv:29: rate 'nan' of class 27"),
        ([(c, 0.1) for c in range(28)] + [(3, 0.2)], r"rates.csv:30: duplicate class '3' \(first on line 5\)"),
    ],
)
def test_prior_rates_file_errors_name_the_file_and_line(tmp_path, rows, match):
    with pytest.raises(KitError, match=match):
        read_class_rates(rates_file(tmp_path / "rates.csv", rows))


def test_prior_rates_and_bag_enter_the_estimates_and_the_sidecar(trained, tmp_path, capsys):
    rates = [(c, round(0.02 + 0.01 * c, 2)) for c in reversed(range(28))]  # any order
    path = rates_file(tmp_path / "rates.csv", rates)
    make_submission.main(["--source", "tiny_effnet", "--prior-rates", path, "--bag", "3", "--rule", "prior"])
    sidecar = read_json(trained / "submissions" / "tiny_effnet.json")
    assert [r["rule"] for r in sidecar["estimates"]] == ["prior", "prior+bag3", "prior+rates"]
    picked = next(r for r in sidecar["estimates"] if r["rule"] == sidecar["rule"])
    assert sidecar["nested_macro_f1"] == picked["nested_macro_f1"]
    assert sidecar["options"]["bag"] == (3 if sidecar["rule"] == "prior+bag3" else 0)
    given = dict(rates)
    assert sidecar["options"]["prior_rates"] == (
        [given[c] for c in range(28)] if sidecar["rule"] == "prior+rates" else None
    )
    assert "prior+rates" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"error: .*bad.csv:2: bad class 'x'"):
        make_submission.main(["--source", "tiny_effnet", "--prior-rates", rates_file(tmp_path / "bad.csv", [("x", 0)])])
    with pytest.raises(SystemExit):
        make_submission.main(["--bag", "0"])
    assert "--bag: must be a number at least 1, got 0" in capsys.readouterr().err
