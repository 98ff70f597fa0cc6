"""`ticketlab report` on early-bird runs of digits and of synthetic detection (a full-length run and an
automatic-mode one each): the early-bird section shows IoU with the final mask for at least five points
of training and the dense steps the automatic mode saved, and index.html renders in headless Chromium
offline with every image loaded (checked in the browser's DOM) and a non-blank screenshot."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ticketlab.cli import main
from ticketlab.config import load_config
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.lottery.imp import run_imp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
# marks each <img> with whether it decoded, once the page has loaded (added to a copy of the page only)
PROBE = ('<script>window.addEventListener("load", () => { for (const i of document.images) '
         'i.setAttribute("data-loaded", String(i.complete && i.naturalWidth > 0)); '
         'document.body.setAttribute("data-probed", "yes"); });</script></body>')
EARLY = "prune.early_bird=[0.2,0.4,0.6,0.8]"
AUTO = ["prune.early_bird_stop=true", "prune.early_bird_threshold=1.0", "prune.early_bird_patience=1"]
SETUPS = {
    "digits": ("configs/digits_lenet.yaml", ["train.duration=2ep", "train.eval_every=1ep", "prune.levels=1"]),
    "detection": ("configs/synth_fasterrcnn_lite.yaml",
                  ["train.duration=10it", "train.eval_every=5it", "train.batch_size=2", "prune.levels=1",
                   "model.width=0.25", "model.detection.box_score_thresh=0.0"]),
}


@pytest.fixture(scope="module", params=list(SETUPS))
def report(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    path, fast = SETUPS[request.param]
    if request.param == "detection":
        generate_synthetic(root / "synth", SynthConfig(n_train=6, n_val=4, seed=3))
        fast = [*fast, f"data.root={root / 'synth'}"]
    runs = [root / "full", root / "auto"]
    run_imp(load_config(path, [*fast, EARLY]), runs[0], log=lambda s: None)
    run_imp(load_config(path, [*fast, EARLY, *AUTO]), runs[1], log=lambda s: None)
    out = root / "report"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    return out


def chromium(*args: str, profile: Path) -> str:
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.body: dict = {}

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "body":
            self.body = dict(attrs)


def test_early_bird_curve_has_five_points_and_the_saving(report):
    rows = list(csv.DictReader(open(report / "early_bird.csv")))
    full = [r for r in rows if r["run"] == "full"]
    assert len(full) >= 5 and float(full[-1]["iou_with_final"]) == 1.0
    assert [float(r["fraction"]) for r in full] == sorted(float(r["fraction"]) for r in full)
    auto = json.loads((report.parent / "auto" / "level_00" / "early_bird.json").read_text())
    assert auto["stop"] and auto["steps_saved"] > 0
    html = (report / "index.html").read_text()
    assert "early_bird.png" in html and f"saving {auto['steps_saved']} steps" in html


def test_index_renders_offline_with_every_image_loaded(report, tmp_path):
    index = report / "index.html"
    probe = report / "probe.html"  # beside index.html, so relative image paths resolve the same way
    probe.write_text(index.read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    try:
        dom = chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), profile=tmp_path / "p1")
    finally:
        probe.unlink()
    page = Images()
    page.feed(dom)
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert page.body.get("data-probed") == "yes"
    assert sorted(i["src"] for i in page.images) == pngs
    assert all(i.get("data-loaded") == "true" for i in page.images), [i["src"] for i in page.images]

    shot = tmp_path / "shot.png"
    chromium("--window-size=1200,3000", f"--screenshot={shot}", index.as_uri(), profile=tmp_path / "p2")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (3000, 1200)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and figures, not a blank page


def test_convergence_csv_is_each_levels_history(report):
    tag = "level_01"
    rows = list(csv.DictReader(open(report / f"convergence_{tag}.csv")))
    loss = "val_loss"  # R-CNNs log their validation loss terms too (tasks/rcnn_val_loss.py)
    assert loss in rows[0]
    for run in ("full", "auto"):
        for level in (0, 1):
            history = list(csv.DictReader(open(report.parent / run / f"level_{level:02d}" / "history.csv")))
            drawn = [r for r in rows if r["run"] == run and r["level"] == str(level)]
            assert [(int(r["step"]), float(r[loss])) for r in drawn] == \
                [(int(h["step"]), float(h[loss])) for h in history]
