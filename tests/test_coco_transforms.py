"""Horizontal flip: boxes, masks and keypoints move together; left/right keypoints swap."""

from __future__ import annotations

import torch

from test_coco_files import write_coco_dir
from ticketlab.data.coco import CocoDetection
from ticketlab.data.detection_transforms import RandomHorizontalFlip, hflip, keypoint_flip_map
from ticketlab.tasks import task_class

COCO_PERSON = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
               "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
               "right_knee", "left_ankle", "right_ankle"]


def test_flip_map_of_coco_person_equals_torchvision_reference():
    # torchvision references/detection/transforms.py hard-codes this order for COCO persons
    assert keypoint_flip_map(COCO_PERSON) == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert keypoint_flip_map(["head", "hand_left", "hand_right", "left_foot"]) == [0, 2, 1, 3]


def _mask_box(mask: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_hflip_keeps_boxes_masks_keypoints_consistent():
    W, H = 20, 10
    masks = torch.zeros(2, H, W, dtype=torch.uint8)
    masks[0, 2:5, 1:7] = 1
    masks[1, 0:10, 12:20] = 1
    target = {
        "boxes": torch.tensor([[1.0, 2.0, 7.0, 5.0], [12.0, 0.0, 20.0, 10.0]]),
        "masks": masks,
        "keypoints": torch.tensor([[[2.0, 3.0, 2], [1.5, 3.0, 1], [6.0, 3.0, 2]],
                                   [[15.0, 5.0, 2], [0.0, 0.0, 0], [18.0, 4.0, 2]]]),
        "labels": torch.tensor([1, 2]),
    }
    image = torch.arange(3 * H * W, dtype=torch.float32).reshape(3, H, W)
    flip_map = keypoint_flip_map(["nose", "left_eye", "right_eye"])
    out_image, out = hflip(image, target, flip_map)
    torch.testing.assert_close(out_image, image[..., torch.arange(W - 1, -1, -1)])
    for box, mask in zip(out["boxes"], out["masks"]):
        assert box.tolist() == _mask_box(mask)  # boxes and masks still agree
    torch.testing.assert_close(out["boxes"], torch.tensor([[13.0, 2.0, 19.0, 5.0], [0.0, 0.0, 8.0, 10.0]]))
    # x mirrored, left_eye and right_eye swapped; an unlabelled point stays (0, 0, 0)
    torch.testing.assert_close(out["keypoints"], torch.tensor([[[18.0, 3.0, 2], [14.0, 3.0, 2], [18.5, 3.0, 1]],
                                                               [[5.0, 5.0, 2], [2.0, 4.0, 2], [0.0, 0.0, 0]]]))
    assert out["labels"] is target["labels"]
    back_image, back = hflip(out_image, out, flip_map)
    torch.testing.assert_close(back_image, image)
    for key in ("boxes", "masks", "keypoints"):
        torch.testing.assert_close(back[key], target[key])


def test_random_flip_uses_torch_global_rng():
    image, target = torch.rand(3, 4, 6), {"boxes": torch.tensor([[0.0, 0.0, 2.0, 2.0]])}
    flip = RandomHorizontalFlip(0.5)

    def draws(seed):
        torch.manual_seed(seed)
        return [bool(flip(image, target)[1]["boxes"][0, 0] != 0) for _ in range(32)]

    assert draws(0) == draws(0) and 4 < sum(draws(0)) < 28
    assert not any(RandomHorizontalFlip(0.0)(image, target)[1]["boxes"][0, 0] != 0 for _ in range(8))
    assert all(RandomHorizontalFlip(1.0)(image, target)[1]["boxes"][0, 0] == 4 for _ in range(8))


def test_dataset_flip_matches_flipping_unaugmented_sample(tmp_path):
    path = write_coco_dir(tmp_path)
    plain = CocoDetection(path, tmp_path / "images", task_class("keypoints").data_needs)
    flipped = CocoDetection(path, tmp_path / "images", task_class("keypoints").data_needs,
                            transform=RandomHorizontalFlip(1.0, plain.meta.keypoint_flip_map))
    image, target = plain[0]
    want_image, want = hflip(image, target, plain.meta.keypoint_flip_map)
    got_image, got = flipped[0]
    torch.testing.assert_close(got_image, want_image)
    torch.testing.assert_close(got["keypoints"], want["keypoints"])
    # the person at x 14..22 with left_eye (16,5) and right_eye (20,5): after the flip, index 1 (left) is at 40-20
    assert got["keypoints"][0, 1].tolist() == [20.0, 5.0, 1.0] and got["keypoints"][0, 2].tolist() == [24.0, 5.0, 2.0]
