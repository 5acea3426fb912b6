"""The report stage: every section on one page, plots on disk beside it, a tolerant reading of the submission."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import a_sidecar

from solution import report
from solution.core.fileio import file_hash
from solution.reporting.page import TITLES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_report(*args: str) -> str:
    report.main(list(args))
    return Path("reports/index.html").read_text()


def check_images(page: str) -> list[str]:
    """The page's image links: bare names of PNG files in reports/."""
    names = re.findall(r'<img src="([^"]+)"', page)
    for name in names:
        assert "/" not in name and (Path("reports") / name).read_bytes()[:8] == PNG_MAGIC, name
    return names


def write_submission(name: str, labels: str, sidecar: dict | None) -> Path:
    """A submission with every test image predicted ``labels``, and ``sidecar`` beside it unless None (as JSON,
    whatever it holds)."""
    data_dir = Path(json.loads(Path("folds/folds.json").read_text())["data_dir"])
    ids = pd.read_csv(data_dir / "sample_submission.csv")["Id"]
    path = Path("submissions") / f"{name}.csv"
    path.parent.mkdir(exist_ok=True)
    pd.DataFrame({"Id": ids, "Predicted": labels}).to_csv(path, index=False)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps({**sidecar, "csv_sha256": file_hash(path)}))
    return path


def test_report_without_submission_has_sections_1_to_5(trained, capsys):
    page = run_report()
    assert "report: reports/index.html" in capsys.readouterr().out
    for title in TITLES:
        assert f"<h2>{title}</h2>" in page
    assert "No submission" in page
    images = check_images(page)
    assert {"f1_per_class.png", "cutoffs.png", "fold_prevalence.png", "estimates.png"} <= set(images)
    assert {"curves_tiny_effnet.png", "curves_tiny_convnext.png"} <= set(images)
    assert "submission.png" not in images
    for name in ("tiny_effnet", "tiny_convnext", "mean", "rank_mean", "hill_climb"):
        assert f"<th>{name}</th>" in page  # a column of the per-class F1 table
    assert "computed here" in page and page.count('<tr class="best">') == 1


def test_report_of_a_submission_shows_its_label_fractions(trained):
    shutil.copytree("oof/tiny_effnet", "oof/stack")  # a valid set under the stack's name
    estimates = [
        {"candidate": "stack", "rule": "f1", "in_sample_macro_f1": 0.5, "nested_macro_f1": 0.1234},
        {"candidate": "tiny_effnet", "rule": "prior", "in_sample_macro_f1": 0.4, "nested_macro_f1": 0.4321},
    ]
    write_submission("mine", "0 25", a_sidecar(estimates=estimates))
    write_submission("no_sidecar", "1", None)  # newer, but without a sidecar: not the default
    page = run_report()
    check_images(page)
    assert "submission.png" in page and "submissions/mine.csv" in page
    assert "<td>0</td><td>Nucleoplasm</td><td>1.000</td>" in page
    assert "<td>25</td><td>Cytosol</td><td>1.000</td>" in page
    assert "<td>1</td><td>Nuclear membrane</td><td>0.000</td>" in page
    assert "<th>stack</th>" in page
    assert "the submitted cut-offs of tiny_effnet (rule prior)" in page
    assert '<tr class="best submitted"><td>tiny_effnet</td><td>prior</td><td>0.4000</td><td>0.4321</td>' in page
    assert "0.1234" in page and "Note:" not in page


def test_report_notes_what_is_missing_instead_of_failing(trained):
    shutil.rmtree("oof/tiny_convnext")  # one experiment: no blends
    Path("runs/tiny_effnet").rename("runs/old_effnet")
    Path("runs/old_effnet/fold0/history.csv").unlink()
    Path("runs/old_effnet/fold1/history.csv").write_text("garbage\n")
    path = write_submission("bare", "", {"source": "nope", "estimates": "n/a"})
    page = run_report("--submission", str(path))
    assert {"curves_old_effnet.png", "curves_tiny_convnext.png"} <= set(check_images(page))
    assert "skipped runs/old_effnet/fold0/history.csv: missing" in page
    assert "skipped runs/old_effnet/fold1/history.csv: needs an epoch column" in page
    assert "tiny_effnet: no run folders in runs/" in page
    assert "<th>tiny_effnet</th>" in page and "<th>mean</th>" not in page
    assert "bare.csv cannot be shown: " in page and "bare.json: lacks rule, why" in page and "computed here" in page


def test_a_submission_its_sidecar_does_not_describe_is_noted(trained):
    path = write_submission("edited", "0", a_sidecar())
    path.write_text(path.read_text().replace(",0", ",1", 1))  # edited by hand after it was written
    page = run_report("--submission", str(path))
    assert "edited.csv cannot be shown: " in page and "is not the file" in page and "submission.png" not in page


@pytest.mark.parametrize("missing, message", [("oof", "no predictions in oof/"), ("folds", "no folds in folds/")])
def test_missing_predictions_or_folds_exit_cleanly(trained, missing, message):
    shutil.rmtree(missing)
    with pytest.raises(SystemExit) as exc:
        report.main([])
    assert str(exc.value.code).startswith("error: ") and message in str(exc.value.code)
    assert not Path("reports").exists()
