"""The HPAv18 downloader against a local server on 127.0.0.1 (never the internet)."""

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import ctrl_c_enabled, png_header_only

from solution.core.errors import DatasetError
from solution.data.external import download, read_list
from solution.data.images import stain_plane
from solution.data.layout import STAINS, open_train_only
from solution.external import main

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
# made-up Ids for the two fixture fields: the fixtures have no antibody prefix
SERVED = {"1_800_A6_1": "800_A6_1", "2_89_B5_1": "89_B5_1", "3_800_A6_1": "800_A6_1"}
LABELS = {"1_800_A6_1": "25", "2_89_B5_1": "6", "3_800_A6_1": "25", "4_1_A1_1": "0"}  # 4_...: not on the server


class Server:
    """A ThreadingHTTPServer of ``{base}/{antibody}/{plate}_{well}_{field}_{stain}.jpg`` that counts requests
    and fails the paths it is told to: with 500 (``fail``: path -> how many times), or by closing the
    connection half way through the body (``truncate``: path -> how many times); it sends the paths in
    ``drip`` (path -> seconds) a byte at a time, status line and headers included, and those in ``unsized``
    without a Content-Length."""

    def __init__(self, root):
        self.requests: Counter[str] = Counter()
        self.fail: dict[str, int] = {}
        self.truncate: dict[str, int] = {}
        self.drip: dict[str, float] = {}
        self.unsized: set[str] = set()
        self.closing = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                with server.lock:
                    server.requests[self.path] += 1
                    seen = server.requests[self.path]
                if seen <= server.fail.get(self.path, 0):
                    self.send_error(500, "planted failure")
                elif seen <= server.truncate.get(self.path, 0):
                    body = (root / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                elif self.path in server.drip:
                    body = (root / self.path.lstrip("/")).read_bytes()
                    head = f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    for byte in head + body:
                        if server.closing.wait(server.drip[self.path]):
                            break
                        try:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            break
                    self.close_connection = True
                elif self.path in server.unsized:
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write((root / self.path.lstrip("/")).read_bytes())
                    self.close_connection = True
                else:
                    super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/images"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def path(self, image_id: str, stain: str) -> str:
        antibody, rest = image_id.split("_", 1)
        return f"/images/{antibody}/{rest}_{stain}.jpg"

    def reset(self):
        self.requests.clear()
        self.fail.clear()
        self.truncate.clear()
        self.drip.clear()
        self.unsized.clear()


@pytest.fixture
def server(hpav18_dir, tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    www = tmp_path / "www"
    for image_id, field in SERVED.items():
        antibody, rest = image_id.split("_", 1)
        (www / "images" / antibody).mkdir(parents=True, exist_ok=True)
        for stain in STAINS:
            shutil.copy(hpav18_dir / f"{field}_{stain}.jpg", www / "images" / antibody / f"{rest}_{stain}.jpg")
    srv = Server(www)
    yield srv
    srv.closing.set()
    srv.httpd.shutdown()
    srv.httpd.server_close()


def write_list(path, ids):
    path.write_text("Id,Target\n" + "".join(f"{i},{LABELS[i]}\n" for i in ids))
    return path


def expected_plane(hpav18_dir, image_id: str, stain: str) -> np.ndarray:
    source = cv2.imread(str(hpav18_dir / f"{SERVED[image_id]}_{stain}.jpg"), cv2.IMREAD_UNCHANGED)
    return cv2.resize(stain_plane(source, stain, "fixture"), (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def files_in(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def fetch(server, tmp_path, ids, **kwargs):
    path = write_list(tmp_path / "list.csv", ids)
    settings = {"workers": 4, "base_url": server.base_url, "retries": 2, "timeout": 10, "backoff": 0.01, **kwargs}
    return download(path, tmp_path / "out", SIZE, **settings)


def test_download_reduces_resizes_and_retries(server, hpav18_dir, tmp_path):
    ids = ["1_800_A6_1", "2_89_B5_1"]
    server.fail[server.path(ids[0], "green")] = 1
    server.truncate[server.path(ids[1], "yellow")] = 1
    report = fetch(server, tmp_path, ids)
    assert report.fetched == ids and not report.failed and not report.skipped
    assert server.requests[server.path(ids[0], "green")] == 2
    assert server.requests[server.path(ids[1], "yellow")] == 2
    out = tmp_path / "out"
    for image_id in ids:
        for stain in STAINS:
            written = cv2.imread(str(out / "train" / f"{image_id}_{stain}.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(written, expected_plane(hpav18_dir, image_id, stain))
    # the rule by hand: yellow is the mean of the yellow file's R and G
    bgr = cv2.imread(str(hpav18_dir / "800_A6_1_yellow.jpg")).astype(np.float32)
    by_hand = cv2.resize((bgr[..., 2] + bgr[..., 1]) / 2, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    written = cv2.imread(str(out / "train" / "1_800_A6_1_yellow.png"), cv2.IMREAD_UNCHANGED)
    assert np.abs(written - by_hand).max() <= 1
    assert files_in(out / "train") == {f"{i}_{s}.png" for i in ids for s in STAINS}
    assert files_in(out) == {"train", "train.csv", "external.json"}
    dataset = open_train_only(out)
    assert dataset.train_ids == ids and dataset.train_labels[:, [25, 6]].tolist() == [[1, 0], [0, 1]]


def test_failures_are_listed_and_reruns_fetch_only_what_is_missing(server, tmp_path, capsys):
    ids = ["1_800_A6_1", "2_89_B5_1", "3_800_A6_1", "4_1_A1_1"]
    server.fail[server.path("3_800_A6_1", "red")] = 99
    report = fetch(server, tmp_path, ids)
    assert report.fetched == ids[:2] and list(report.failed) == ids[2:]
    assert "HTTP Error 500" in report.failed["3_800_A6_1"] and "3 attempt(s)" in report.failed["3_800_A6_1"]
    assert server.requests[server.path("3_800_A6_1", "red")] == 3
    assert "HTTP Error 404" in report.failed["4_1_A1_1"] and server.requests[server.path("4_1_A1_1", "red")] == 1
    out = tmp_path / "out"
    assert pd.read_csv(out / "train.csv", dtype=str).values.tolist() == [[i, LABELS[i]] for i in ids[:2]]
    assert pd.read_csv(out / "failed.csv").Id.tolist() == ids[2:]
    # the stains that did arrive are kept, nothing half-written is
    assert files_in(out / "train") == {f"{i}_{s}.png" for i in ids[:3] for s in STAINS} - {"3_800_A6_1_red.png"}

    server.reset()
    (out / "train" / ".3_800_A6_1_red.png.x1y2.tmp").write_bytes(b"half a PNG")  # as a killed run leaves it
    argv = ["--csv", str(tmp_path / "list.csv"), "--out", str(out), "--size", str(SIZE), "--base-url", server.base_url]
    with pytest.raises(SystemExit, match=r"error: 1 image\(s\) failed, listed in .*failed.csv"):
        main(argv + ["--retries", "0"])
    assert sorted(server.requests) == sorted(
        [server.path("3_800_A6_1", "red")] + [server.path("4_1_A1_1", s) for s in STAINS]
    )
    assert "1 images fetched, 2 already complete, 1 failed" in capsys.readouterr().out
    assert pd.read_csv(out / "failed.csv").Id.tolist() == ["4_1_A1_1"]
    assert not list((out / "train").glob("*.tmp"))

    server.reset()
    main(["--csv", str(write_list(tmp_path / "list.csv", ids[:3])), *argv[2:]])
    assert not server.requests and not (out / "failed.csv").exists()
    assert "0 images fetched, 3 already complete, 0 failed" in capsys.readouterr().out
    assert pd.read_csv(out / "train.csv").Id.tolist() == ids[:3]
    with pytest.raises(SystemExit, match=f"error: .*holds images of {SIZE} px; rerun with --size {SIZE}"):
        main(argv[:4] + ["--size", "32", "--base-url", server.base_url])


@pytest.mark.parametrize(
    "row, match",
    [
        ("10580-1610-C1-1,1", r":3: Id '10580-1610-C1-1' is not of the form antibody_plate_well_field"),
        ("10580_1610_C1,1", r":3: Id '10580_1610_C1' is not of the form"),
        ("10580_1610_C1_1,29", r":3: bad label '29'"),
        ("10580_1610_C1_1", r":3: expected 2 columns"),
    ],
)
def test_malformed_rows_name_their_line(tmp_path, row, match):
    path = tmp_path / "list.csv"
    path.write_text(f"Id,Target\n1_2_A1_1,0\n{row}\n")
    with pytest.raises(DatasetError, match=match):
        read_list(path)
    with pytest.raises(SystemExit, match="error: .*list.csv" + match):
        main(["--csv", str(path), "--out", str(tmp_path / "out"), "--base-url", "http://127.0.0.1:9/images"])


def test_an_out_folder_the_downloader_did_not_write_is_refused(tiny_dataset, tmp_path):
    labels = (tiny_dataset / "train.csv").read_bytes()
    path = write_list(tmp_path / "list.csv", ["1_800_A6_1"])
    with pytest.raises(SystemExit, match=r"error: --out .*data: holds files the downloader did not write \(sample_sub"):
        main(["--csv", str(path), "--out", str(tiny_dataset), "--base-url", "http://127.0.0.1:9/images"])
    assert (tiny_dataset / "train.csv").read_bytes() == labels and not (tiny_dataset / "external.json").exists()


def test_an_image_beyond_the_pixel_limit_fails_at_once_by_its_header(server, tmp_path):
    huge = server.path("1_800_A6_1", "blue")
    (tmp_path / "www" / huge.lstrip("/")).write_bytes(png_header_only(9000, 9000))
    reason = fetch(server, tmp_path, ["1_800_A6_1"]).failed["1_800_A6_1"]
    assert "blue: " in reason and "9000 x 9000 pixels, beyond the limit of" in reason and "1 attempt(s)" in reason


def test_a_file_that_trickles_in_fails_at_its_deadline(server, tmp_path):
    slow = server.path("1_800_A6_1", "red")
    server.drip[slow] = 0.05  # 20 bytes a second, each well within the per-read timeout
    start = time.monotonic()
    report = fetch(server, tmp_path, ["1_800_A6_1", "2_89_B5_1"], retries=1, deadline=0.5)
    assert time.monotonic() - start < 5  # two attempts of 0.5 s, not the hours the body would take
    assert list(report.failed) == ["1_800_A6_1"] and report.fetched == ["2_89_B5_1"]
    assert "red: no whole file within the --deadline of 0.5 s" in report.failed["1_800_A6_1"]
    assert "2 attempt(s)" in report.failed["1_800_A6_1"] and server.requests[slow] == 2


@pytest.mark.parametrize("declared", [True, False])
def test_a_file_over_the_size_limit_fails_at_once(server, tmp_path, declared):
    big = server.path("1_800_A6_1", "green")
    served = tmp_path / "www" / big.lstrip("/")
    served.write_bytes(served.read_bytes() + bytes(1 << 20))  # a JPEG still, 1 MiB larger
    if not declared:
        server.unsized.add(big)
    report = fetch(server, tmp_path, ["1_800_A6_1"], max_bytes=1 << 20)
    reason = report.failed["1_800_A6_1"]
    assert "green: larger than the --max-mib limit of" in reason and "1 attempt(s)" in reason
    assert ("bytes declared" in reason) == declared and server.requests[big] == 1
    assert files_in(tmp_path / "out" / "train") == {f"1_800_A6_1_{s}.png" for s in STAINS if s != "green"}


@pytest.mark.slow
def test_ctrl_c_stops_at_once_keeps_what_finished_and_a_rerun_resumes(server, tmp_path):
    ids = ["1_800_A6_1", "2_89_B5_1"]
    slow = server.path("2_89_B5_1", "red")
    server.drip[slow] = 0.5
    out = tmp_path / "out"
    argv = ["--csv", str(write_list(tmp_path / "list.csv", ids)), "--out", str(out), "--size", str(SIZE)]
    argv += ["--base-url", server.base_url, "--workers", "4"]
    code = f"from solution.external import main; main({argv!r})"
    cmd = [sys.executable, "-c", code]
    run = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_enabled)
    try:
        for _ in range(600):  # until the seven quick stains are written and the slow one is under way
            if server.requests[slow] and len(list((out / "train").glob("*.png"))) == 7:
                break
            time.sleep(0.05)
        start = time.monotonic()
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    assert time.monotonic() - start < 3 and run.returncode == 130, err
    assert "error: interrupted; the stains in" in err and "rerun the same command" in err and "Traceback" not in err
    assert files_in(out / "train") == {f"{i}_{s}.png" for i in ids for s in STAINS} - {"2_89_B5_1_red.png"}
    server.reset()
    report = fetch(server, tmp_path, ids)
    assert report.fetched == ["2_89_B5_1"] and list(server.requests) == [slow]
