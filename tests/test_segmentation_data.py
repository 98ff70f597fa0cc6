"""VOC-format semantic masks: the synthetic writer agrees with its COCO annotations, the voc_seg reader
reads palette PNGs, paired transforms move image and mask together, batches pad with the ignore label."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from ticketlab.config import Config, DataConfig
from ticketlab.data import build_data
from ticketlab.data.segmentation_transforms import collate_segmentation, segmentation_transforms
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.data.transforms import Stats
from ticketlab.data.voc_seg import IGNORE_INDEX, VocSegmentation
from ticketlab.errors import TicketlabError
from ticketlab.tasks import build_task_data

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

SMALL = SynthConfig(seed=4, n_train=8, n_val=4, image_size=64)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_seg")
    generate_synthetic(out, SMALL)
    return out


def test_synthetic_masks_agree_with_the_coco_annotations(synth):
    coco = COCO(str(synth / "val.json"))
    names = (synth / "segmentation_classes.txt").read_text().split()
    assert names == ["background", *SMALL.classes]
    ids = (synth / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert len(ids) == SMALL.n_val
    ignored = 0
    for img in coco.loadImgs(coco.getImgIds()):
        stem = img["file_name"].removesuffix(".png")
        assert stem in ids
        with Image.open(synth / "SegmentationClass" / f"{stem}.png") as png:
            assert png.mode == "P" and png.getpalette()[3 * 255:3 * 256] == [224, 224, 192]  # VOC's colour of 255
            mask = np.array(png)
        expected = np.zeros_like(mask)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
            expected[coco.annToMask(ann).astype(bool)] = ann["category_id"]
        keep = mask != IGNORE_INDEX
        assert np.array_equal(mask[keep], expected[keep])
        # every ignored pixel lies next to a change of label in the COCO-derived map
        padded = np.pad(expected, 1, mode="edge")
        for y, x in zip(*np.nonzero(~keep)):
            assert len(np.unique(padded[y:y + 3, x:x + 3])) > 1
        ignored += int((~keep).sum())
    assert ignored > 0


def test_masks_are_byte_reproducible(synth, tmp_path):
    generate_synthetic(tmp_path / "again", SMALL)
    generate_synthetic(tmp_path / "other", dataclasses.replace(SMALL, seed=5))
    name = "SegmentationClass/train/000003.png"
    assert (synth / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert (synth / name).read_bytes() != (tmp_path / "other" / name).read_bytes()


def test_voc_seg_reader_builds_the_bundle(synth):
    data = build_data(DataConfig(format="voc_seg", root=str(synth), image_size=48, augment=True))
    assert data.num_classes == len(SMALL.classes) + 1 and len(data.train) == SMALL.n_train
    images, masks = data.collate_fn([data.train[i] for i in range(3)])
    assert images.shape == (3, 3, 48, 48) and masks.shape == (3, 48, 48) and masks.dtype == torch.int64
    image, mask = data.val[0]  # validation keeps the stored resolution
    assert image.shape[-2:] == mask.shape == (SMALL.image_size, SMALL.image_size)
    with pytest.raises(TicketlabError, match="task classification reads digits, .*; 'voc_seg' holds pixel_labels"):
        build_task_data(Config(data=DataConfig(format="voc_seg", root=str(synth))))


def test_mask_value_outside_the_classes_is_an_error(synth, tmp_path):
    root = tmp_path / "voc"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000001\n")
    Image.new("RGB", (8, 6)).save(root / "JPEGImages" / "2007_000001.jpg")
    Image.fromarray(np.full((6, 8), 30, dtype=np.uint8)).save(root / "SegmentationClass" / "2007_000001.png")
    ds = VocSegmentation(root, "train", num_classes=21)  # no classes file: VOC's 21
    with pytest.raises(TicketlabError, match="2007_000001.png: class index 30"):
        ds[0]
    with pytest.raises(TicketlabError, match="val.txt"):
        VocSegmentation(root, "val", num_classes=21)


def test_paired_transforms_keep_image_and_mask_aligned():
    # an image whose red channel spells the label: after flip/rescale/crop, pixels must still agree
    label = np.zeros((40, 60), dtype=np.uint8)
    label[5:25, 10:30], label[20:38, 35:58] = 1, 2
    rgb = np.repeat((label * 100)[..., None], 3, axis=2)
    from torchvision import tv_tensors

    pair = (tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1)), tv_tensors.Mask(torch.from_numpy(label)))
    train, _ = segmentation_transforms(Stats((0.0,) * 3, (1.0,) * 3), 48, augment=True)
    flipped = 0
    for seed in range(12):
        torch.manual_seed(seed)
        image, mask = train(*pair)
        assert image.shape[-2:] == mask.shape == (48, 48)
        keep = mask != IGNORE_INDEX
        objects = keep & (mask > 0)
        agree = (torch.round(image[0] * 255 / 100) == mask)[objects].float().mean()
        assert agree > 0.85, seed  # antialiased resizing blends the image (not the mask) at label edges
        assert torch.all(image[:, ~keep] == 0)  # padding: image 0 where the mask is ignored
        # left-right order of the two blobs tells whether this draw flipped
        cols = [torch.nonzero(mask == k)[:, 1].float().mean() for k in (1, 2) if (mask == k).any()]
        flipped += len(cols) == 2 and bool(cols[0] > cols[1])
    assert flipped > 0


def test_collate_pads_masks_with_the_ignore_label():
    a = (torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.uint8))
    b = (torch.ones(3, 6, 3), torch.ones(6, 3, dtype=torch.uint8))
    images, masks = collate_segmentation([a, b])
    assert images.shape == (2, 3, 6, 5) and masks.shape == (2, 6, 5)
    assert torch.all(masks[0, 4:] == IGNORE_INDEX) and torch.all(masks[1, :, 3:] == IGNORE_INDEX)
    assert torch.all(images[0, :, 4:] == 0) and masks[0, :4].eq(0).all() and masks[1, :, :3].eq(1).all()
