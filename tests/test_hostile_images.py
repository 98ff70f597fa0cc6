"""Broken images, odd image modes, empty datasets and category ids with gaps.

- image folders decode every mode (grayscale, palette, RGBA, 16-bit) to RGB in [0, 1] like the
  detection reader; a corrupt or truncated PNG/JPEG is a one-line error naming the file;
- a split with no images is an error naming its file, for COCO, VOC and image folders;
- COCO category ids 1, 3, 7 become labels 1, 2, 3 and map back: a training step runs and perfect
  detections score AP 1 in our evaluator and in pycocotools alike.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from test_coco_files import PYCOCO_NUMPY2, write_coco_dir, write_png
from test_detection_task_train import tiny_model
from ticketlab.cli import main
from ticketlab.config import DataConfig
from ticketlab.data import build_data
from ticketlab.data.coco import CocoDetection
from ticketlab.data.detection import build_detection_data, collate_detection
from ticketlab.data.transforms import IMAGENET_STATS
from ticketlab.errors import TicketlabError
from ticketlab.tasks import build_task

pytestmark = pytest.mark.filterwarnings(PYCOCO_NUMPY2)


def one_line_naming(error: TicketlabError, path) -> None:
    assert "\n" not in str(error) and str(path) in str(error), str(error)


def encoded(fmt: str, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


BROKEN = {  # name -> bytes
    "truncated.png": encoded("PNG")[:200],
    "truncated.jpg": encoded("JPEG")[:300],
    "garbage.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "empty.jpg": b"",
    "text.jpg": b"not an image at all",
}


# -- image folders ---------------------------------------------------------------------------------


def folder(root, images: dict[str, Image.Image | bytes]) -> DataConfig:
    for split in ("train", "val"):
        for name, img in images.items():
            path = root / split / "a" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(img) if isinstance(img, bytes) else img.save(path)
    return DataConfig(format="imagefolder", root=str(root), image_size=224, augment=False)


def test_imagefolder_decodes_every_mode_to_rgb_in_unit_range(tmp_path):
    rng = np.random.default_rng(1)
    sixteen = rng.integers(0, 65536, (256, 256), dtype=np.uint16)
    rgba = rng.integers(0, 256, (256, 256, 4), dtype=np.uint8)
    images = {"i16.png": Image.fromarray(sixteen), "rgba.png": Image.fromarray(rgba, "RGBA"),
              "gray.png": Image.fromarray(rgba[..., 0], "L"),
              "palette.png": Image.fromarray(rgba[..., :3], "RGB").convert("P")}
    data = build_data(folder(tmp_path, images))
    mean = torch.tensor(IMAGENET_STATS.mean)[:, None, None]
    std = torch.tensor(IMAGENET_STATS.std)[:, None, None]
    crop = slice(16, 240)  # eval: resize 224·256/224 = 256 (the size already), centre-crop 224
    for (x, _), (path, _) in zip(data.val, data.val.samples):
        pixels = (x * std + mean).numpy()
        reference = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
        if path.endswith("i16.png"):  # PIL's RGB conversion saturates 16-bit pixels; the reference scales
            reference = np.repeat(sixteen[None].astype(np.float32) / 65535, 3, axis=0)
        assert x.shape == (3, 224, 224)
        np.testing.assert_allclose(pixels, reference[:, crop, crop], atol=1e-5)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_imagefolder_broken_image_is_one_line_naming_it(tmp_path, name):
    data = build_data(folder(tmp_path, {name: BROKEN[name]}))
    with pytest.raises(TicketlabError, match="not a readable image") as e:
        data.train[0]
    one_line_naming(e.value, tmp_path / "train" / "a" / name)


def find_on_folder_with(tmp_path, name: str, content: bytes, capsys) -> tuple[int, str]:
    """`ticketlab find` on a tiny image folder holding one good image and `name`, read by a loader
    worker; returns (exit status, stderr)."""
    good = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    folder(tmp_path / "data", {"ok.png": good, name: content})
    config = tmp_path / "c.yaml"
    config.write_text(f"task: classification\nmodel: {{family: resnet18, width: 0.125}}\n"
                      f"data: {{format: imagefolder, root: {tmp_path / 'data'}, image_size: 16, num_workers: 1}}\n"
                      "train: {batch_size: 2, duration: 1it}\nprune: {levels: 0}\n")
    code = main(["find", str(config), "--out", str(tmp_path / "run")])
    return code, capsys.readouterr().err.strip()


def test_broken_image_read_in_a_dataloader_worker_is_still_one_line(tmp_path, capsys):
    # the worker's traceback travels inside the exception's message; the CLI prints only its last line
    code, err = find_on_folder_with(tmp_path, "bad.png", BROKEN["truncated.png"], capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("ticketlab: error: ") and "bad.png" in err and "Traceback" not in err, err


def test_imagefolder_without_images_is_refused(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "notes.txt").write_text("no images here")
    with pytest.raises(TicketlabError, match="data.train: no images found under") as e:
        build_data(DataConfig(format="imagefolder", root=str(tmp_path)))
    one_line_naming(e.value, tmp_path / "train")


# -- detection -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_detection_broken_image_is_one_line_naming_it(tmp_path, name):
    path = write_coco_dir(tmp_path)
    broken = tmp_path / "images" / "train" / "a.png"
    broken.write_bytes(BROKEN[name])
    ds = CocoDetection(path, tmp_path / "images")
    with pytest.raises(TicketlabError, match="not a readable image") as e:
        ds[0]
    one_line_naming(e.value, broken)


def test_empty_coco_split_is_refused(tmp_path):
    (tmp_path / "train.json").write_text(json.dumps({"images": [], "annotations": [],
                                                     "categories": [{"id": 1, "name": "a"}]}))
    cfg = DataConfig(format="coco", root=str(tmp_path), train="train.json", val="train.json")
    with pytest.raises(TicketlabError, match="lists no images") as e:
        build_detection_data(cfg)
    one_line_naming(e.value, tmp_path / "train.json")


def test_empty_voc_image_set_is_refused(tmp_path):
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "ImageSets/Main/trainval.txt").write_text("\n")
    cfg = DataConfig(format="voc", root=str(tmp_path), train="trainval", val="trainval")
    with pytest.raises(TicketlabError, match="lists no images") as e:
        build_detection_data(cfg)
    one_line_naming(e.value, tmp_path / "ImageSets/Main/trainval.txt")


def gapped_coco() -> dict:
    """Two 40×30 images; categories 1, 3 and 7 (ids with gaps, listed out of order)."""
    boxes = {1: [[2, 3, 10, 8], [20, 2, 12, 20]], 2: [[5, 5, 15, 12], [25, 15, 10, 10]]}
    cats = {(1, 0): 7, (1, 1): 1, (2, 0): 3, (2, 1): 7}
    anns = [{"id": 10 * img + j + 1, "image_id": img, "category_id": cats[img, j], "bbox": box,
             "area": box[2] * box[3], "iscrowd": 0} for img, bs in boxes.items() for j, box in enumerate(bs)]
    return {"images": [{"id": i, "file_name": f"train/{i}.png", "width": 40, "height": 30} for i in (1, 2)],
            "annotations": anns,
            "categories": [{"id": 7, "name": "seven"}, {"id": 1, "name": "one"}, {"id": 3, "name": "three"}]}


def test_category_ids_with_gaps_train_and_evaluate(tmp_path):
    coco = gapped_coco()
    write_coco_dir(tmp_path, coco)
    cfg = DataConfig(format="coco", root=str(tmp_path), train="train.json", val="train.json", augment=False)
    data = build_detection_data(cfg)
    meta = data.train.meta
    assert data.num_classes == 4 and meta.cat_ids == (1, 3, 7) and meta.class_names == ("one", "three", "seven")
    targets = [data.train[i][1] for i in range(2)]
    for t, img in zip(targets, (1, 2)):  # each target label maps back to its annotation's category id
        cats = [a["category_id"] for a in coco["annotations"] if a["image_id"] == img]
        assert [meta.label_to_cat[int(k)] for k in t["labels"]] == cats

    task = build_task("detection", data)
    model = tiny_model("detection", data.num_classes, 0)
    model.train()
    loss = task.loss(model, collate_detection([data.train[0], data.train[1]]), torch.device("cpu"))["loss"]
    loss.backward()
    assert torch.isfinite(loss)

    class Perfect(torch.nn.Module):  # returns the ground truth as detections, in model-label space
        def forward(self, images):
            return [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
                    for t in targets[:len(images)]]

    # predictions only: evaluate() also asks the model for R-CNN validation losses, which this stand-in has not
    results = task.predict(Perfect(), [collate_detection([data.val[0], data.val[1]])], torch.device("cpu"))
    metrics = task.evaluate_results(results)
    gt = COCO()
    gt.dataset = coco
    gt.createIndex()
    ref = COCOeval(gt, gt.loadRes(task.last_results), "bbox")
    ref.evaluate(), ref.accumulate(), ref.summarize()
    assert metrics["bbox_AP"] == pytest.approx(ref.stats[0]) == pytest.approx(1.0)
    assert sorted({r["category_id"] for r in task.last_results}) == [1, 3, 7]


# -- decompression bombs ---------------------------------------------------------------------------


def png_header_claiming(width: int, height: int) -> bytes:
    """A few dozen bytes of PNG whose header claims width×height RGB pixels (no pixel data)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


BOMBS = {"60000x60000": (60000, 60000), "10000x9000": (10000, 9000)}  # beyond PIL's 2× limit / beyond ours only


@pytest.mark.parametrize("claim", sorted(BOMBS))
def test_image_folder_bomb_is_refused_naming_file_and_size_from_find(tmp_path, capsys, claim):
    # was a traceback: PIL's DecompressionBombError from inside the data loader
    code, err = find_on_folder_with(tmp_path, "bomb.png", png_header_claiming(*BOMBS[claim]), capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "bomb.png: image claims" in err and "data.max_image_pixels" in err, err
    if claim == "10000x9000":
        assert "10000×9000 = 90000000 pixels" in err and "limit of 89478485" in err


def test_coco_and_voc_bombs_are_refused_naming_the_file(tmp_path):
    path = write_coco_dir(tmp_path)
    bomb = tmp_path / "images" / "train" / "a.png"
    bomb.write_bytes(png_header_claiming(60000, 60000))
    with pytest.raises(TicketlabError, match="image claims 3600000000 pixels") as e:
        CocoDetection(path, tmp_path / "images")[0]
    one_line_naming(e.value, bomb)

    from ticketlab.data.voc import read_voc_xml  # VOC reads the header when the XML has no <size>
    (tmp_path / "x.xml").write_text("<annotation><filename>a.png</filename></annotation>")
    with pytest.raises(TicketlabError, match="image claims 3600000000 pixels") as e:
        read_voc_xml(tmp_path / "x.xml", bomb.parent)
    assert "\n" not in str(e.value) and str(bomb) in str(e.value)


def test_voc_seg_bomb_and_a_lowered_limit_are_refused(tmp_path):
    from ticketlab.data.voc_seg import read_mask

    bomb = tmp_path / "m.png"
    bomb.write_bytes(png_header_claiming(60000, 60000))
    with pytest.raises(TicketlabError, match="image claims") as e:
        read_mask(bomb)
    one_line_naming(e.value, bomb)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 10), dtype=np.uint8), "L").save(small)
    assert read_mask(small).shape == (20, 10)
    with pytest.raises(TicketlabError, match=r"10×20 = 200 pixels, more than the limit of 199"):
        read_mask(small, max_pixels=199)


def test_max_image_pixels_is_a_config_key_with_a_range_check(tmp_path):
    from ticketlab.config import load_config

    assert load_config(None, ["data.max_image_pixels=1000"]).data.max_image_pixels == 1000
    with pytest.raises(TicketlabError, match="data.max_image_pixels: expected 1 or more"):
        load_config(None, ["data.max_image_pixels=0"])
