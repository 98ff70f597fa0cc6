"""Object crops of the synthetic scenes: one crop per annotated object the COCO set holds (same seeds),
readable as an image folder for classification and for the contrastive tasks."""

import json
from collections import Counter

from PIL import Image

from ticketlab.cli import main
from ticketlab.config import Config, DataConfig
from ticketlab.tasks import build_task_data
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.data.synth.crops import CropConfig, write_crops


def test_crops_are_the_coco_objects_of_the_same_scenes(tmp_path):
    synth = SynthConfig(n_train=12, n_val=4, image_size=64, imbalance=1.0)
    crops = CropConfig(crop_size=24, min_area=50)
    summary = write_crops(tmp_path / "crops", synth, crops)
    generate_synthetic(tmp_path / "coco", synth)
    for split in ("train", "val"):
        coco = json.loads((tmp_path / "coco" / f"{split}.json").read_text())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        expected = Counter(names[a["category_id"]] for a in coco["annotations"] if a["area"] >= 50)
        on_disk = Counter(p.parent.name for p in (tmp_path / "crops" / split).glob("*/*.png"))
        assert on_disk == expected
        assert {k: v for k, v in summary["counts"][split].items() if v} == dict(expected)
        for image_id, obj in [(a["image_id"], a) for a in coco["annotations"][:3] if a["area"] >= 50]:
            files = sorted((tmp_path / "crops" / split / names[obj["category_id"]]).glob(f"{image_id - 1:06d}_*.png"))
            assert files and Image.open(files[0]).size == (24, 24)


def test_crops_cli_feeds_the_simclr_task(tmp_path):
    out = tmp_path / "crops"
    assert main(["data", "synth-crops", "--out", str(out), "--n-train", "24", "--n-val", "4", "--imbalance", "1.0",
                 "--image-size", "64", "--crop-size", "16"]) == 0
    data = build_task_data(Config(task="simclr", data=DataConfig(format="imagefolder", root=str(out), image_size=16)))
    (v1, v2), label = data.train[0]
    image, memory_label = data.memory[0]
    assert v1.shape == v2.shape == image.shape == (3, 16, 16) and label == memory_label
    assert data.class_names == sorted(SynthConfig().classes)


def test_crops_cli_rejects_bad_options(tmp_path, capsys):
    assert main(["data", "synth-crops", "--out", str(tmp_path), "--pad", "3"]) == 2
    assert "crops.pad" in capsys.readouterr().err
