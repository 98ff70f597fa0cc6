"""Property tests (hypothesis) for the COCO reader: a hostile annotation file is either accepted or
refused with ONE `TicketlabError` line naming the file and the field, never another exception; and
what it accepts, the evaluator's COCO API can rasterise and our dataset can turn into targets.

The RLE check is held to pycocotools' own codec: every RLE pycocotools encodes is accepted, every
RLE whose runs do not cover the image exactly is refused (the C API would decode it into garbage),
and any string we accept decodes in pycocotools to a mask of exactly the area it reports.

Examples are bounded and derandomized, so CI sees the same inputs every run.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from faster_coco_eval import COCO as FasterCOCO
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from test_coco_files import PYCOCO_NUMPY2, base_coco, write_coco_dir
from ticketlab.data.coco import CocoDetection
from ticketlab.data.detection_masks import rle_string_runs
from ticketlab.data.detection_validate import index_coco
from ticketlab.errors import TicketlabError
from ticketlab.tasks import task_class

pytestmark = pytest.mark.filterwarnings(PYCOCO_NUMPY2)
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
H, W = 30, 40  # base_coco's images

# Values a careless converter or a hostile user writes where a number, string, list or object belongs.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.sampled_from([0, -1, 1, 2**32, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf, -0.5]),
    st.text(max_size=8), st.sampled_from(["", "../x.png", "/etc/passwd", "a\nb", "train/b.png", "0"]),
)
HOSTILE = [None, True, -1, 0, 2**63, 1.5, math.nan, math.inf, "", "a\nb", "../x.png", [], {}, [1, 2],
           {"size": [1, 1], "counts": "0"}, [[1.0, math.nan]]]
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                           st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    write_coco_dir(root)  # images for base_coco()
    return root


def check_refusal(error: TicketlabError, path: Path, *fields: str) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert str(path) in message, message
    assert any(f in message for f in fields), (fields, message)


def read(path: Path, root: Path, task: str) -> CocoDetection:
    """The reader under test, then everything downstream of acceptance."""
    ds = CocoDetection(path, root / "images", task_class(task).data_needs)
    for i in range(len(ds)):
        ds.target(i)  # boxes, labels, masks (decoded) or keypoints: must not raise
    evaluator_gt = FasterCOCO(copy.deepcopy(ds.coco_gt))  # what COCO evaluation loads must take it too
    for ann in evaluator_gt.dataset["annotations"]:
        if ann.get("segmentation"):
            rle = evaluator_gt.annToRLE(ann)
            if isinstance(ann["segmentation"], dict):  # an RLE: pycocotools decodes exactly its area
                rle = mask_utils.frPyObjects(ann["segmentation"], H, W) if isinstance(
                    ann["segmentation"]["counts"], list) else ann["segmentation"]
                assert mask_utils.decode(rle).sum() == mask_utils.area(rle)
    return ds


@st.composite
def mutated_coco(draw):
    """base_coco() with 1–3 hostile edits; returns (coco, words an error should contain)."""
    coco = base_coco()
    fields: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(["images", "annotations", "categories"]))
        items = coco[section]
        if not items:
            continue
        kind = draw(st.sampled_from(["set", "delete", "duplicate", "swap_type", "dangling"]))
        i = draw(st.integers(0, len(items) - 1))
        item = items[i]
        if not isinstance(item, dict):
            continue
        key = draw(st.sampled_from(sorted(item) or ["id"]))
        if kind == "set":
            item[key] = draw(st.one_of(st.sampled_from(HOSTILE), json_values))
        elif kind == "delete":
            item.pop(key, None)
        elif kind == "duplicate":
            items.append(copy.deepcopy(item))
        elif kind == "swap_type":  # the same value in a JSON type one step off
            value = item.get(key)
            item[key] = (str(value) if isinstance(value, (int, float)) else [value] if not isinstance(value, list)
                         else {"v": value})
        else:  # an id pointing nowhere, or an id reused
            key = draw(st.sampled_from(["image_id", "category_id"] if section == "annotations" else ["id"]))
            item[key] = draw(st.sampled_from([0, 3, 7, 99, -1, 2]))
        fields += [key, section.rstrip("s"), "id"]
    return coco, fields


@settings(SETTINGS, max_examples=300)
@given(case=mutated_coco(), task=st.sampled_from(["detection", "instance_segmentation", "keypoints"]))
def test_hostile_coco_is_accepted_or_refused_in_one_line(coco_dir, case, task):
    coco, fields = case
    path = coco_dir / "hostile.json"
    path.write_text(json.dumps(coco))  # NaN / Infinity as Python writes them: json.load reads them back
    try:
        read(path, coco_dir, task)
    except TicketlabError as e:
        check_refusal(e, path, *fields, "expected a list under", "keypoint", "'categories' is empty")


@pytest.mark.parametrize("task", ["instance_segmentation", "keypoints"])
def test_every_field_replaced_by_every_hostile_value(coco_dir, task):
    """Exhaustive over single edits (hypothesis above explores combinations of them)."""
    path = coco_dir / "one_field.json"
    for section in ("images", "annotations", "categories"):
        for i, item in enumerate(base_coco()[section]):
            for key in item:
                for value in HOSTILE:
                    coco = base_coco()
                    coco[section][i][key] = value
                    path.write_text(json.dumps(coco))
                    try:
                        read(path, coco_dir, task)
                    except TicketlabError as e:
                        check_refusal(e, path, key, "id")


@SETTINGS
@given(text=st.one_of(st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))),
       cut=st.integers(0, 400))
def test_truncated_or_garbage_json_is_refused_in_one_line(coco_dir, text, cut):
    path = coco_dir / "garbage.json"
    path.write_text(json.dumps(base_coco())[:cut] + text)
    try:
        index_coco(path, coco_dir / "images")
    except TicketlabError as e:
        check_refusal(e, path, "JSON", "expected", "id")


# -- RLE ------------------------------------------------------------------------------------------


def with_segmentation(seg) -> dict:
    coco = base_coco()
    coco["annotations"][3]["segmentation"] = seg  # annotation id 4, on the 40×30 image 1
    coco["annotations"][3].pop("area")  # filled in from the mask: pycocotools decodes it
    return coco


def index_seg(coco_dir: Path, seg) -> None:
    path = coco_dir / "rle.json"
    path.write_text(json.dumps(with_segmentation(seg)))
    read(path, coco_dir, "instance_segmentation")


runs_covering = st.lists(st.integers(0, H * W), min_size=1, max_size=12).map(
    lambda cuts: np.diff([0, *sorted(c for c in cuts), H * W]).tolist())  # non-negative, sum H·W


def compressed(runs: list[int], h: int, w: int) -> str:
    """pycocotools' own encoding of `runs` (an uncompressed RLE of an h×w image)."""
    return mask_utils.frPyObjects({"size": [h, w], "counts": runs}, h, w)["counts"].decode("ascii")


@SETTINGS
@given(runs=runs_covering, as_string=st.booleans())
def test_every_rle_pycocotools_encodes_is_accepted(coco_dir, runs, as_string):
    counts = compressed(runs, H, W) if as_string else runs
    index_seg(coco_dir, {"size": [H, W], "counts": counts})  # raises nothing


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), density=st.sampled_from([0.0, 0.01, 0.3, 0.5, 0.9, 1.0]),
       h=st.integers(1, 70), w=st.integers(1, 70))
def test_rle_strings_read_back_into_the_masks_runs(seed, density, h, w):
    mask = np.asfortranarray(np.random.default_rng(seed).random((h, w)) < density).astype(np.uint8)
    counts = mask_utils.encode(mask)["counts"].decode("ascii")
    flat = mask.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff([0, *edges, flat.size]).tolist()
    assert rle_string_runs(counts) == ([0] + runs if flat[0] else runs)


@SETTINGS
@given(runs=runs_covering, change=st.integers(-50, 50).filter(bool), as_string=st.booleans())
def test_rle_runs_not_covering_the_image_are_refused(coco_dir, runs, change, as_string):
    runs = list(runs)
    runs[-1] += change
    if runs[-1] < 0:
        runs[-1] = 0 if sum(runs[:-1]) != H * W else 1
    total = sum(runs)
    counts = compressed(runs, 1, max(total, 1)) if as_string else runs  # encoded for an image it does fit
    with pytest.raises(TicketlabError) as e:
        index_seg(coco_dir, {"size": [H, W], "counts": counts})
    check_refusal(e.value, coco_dir / "rle.json", "annotation id 4: RLE 'counts'")


@SETTINGS
@given(counts=st.one_of(st.text(alphabet=st.characters(min_codepoint=40, max_codepoint=120), max_size=30),
                        st.lists(st.one_of(st.integers(-5, 2**33), st.floats(), st.text(max_size=2)), max_size=6),
                        json_values),
       size=st.one_of(st.just([H, W]), json_values))
def test_arbitrary_rle_is_refused_or_decodes_exactly(coco_dir, counts, size):
    seg = {"size": size, "counts": counts}
    try:
        index_seg(coco_dir, seg)  # accepted: pycocotools decoded it to a mask of its reported area
    except TicketlabError as e:
        check_refusal(e, coco_dir / "rle.json", "annotation id 4: RLE", "annotation id 4: 'area'")


@SETTINGS
@given(seg=st.one_of(json_values, st.lists(st.lists(st.floats(-1e12, 1e12), max_size=10), max_size=3)))
def test_arbitrary_polygons_are_refused_or_rasterised(coco_dir, seg):
    try:
        index_seg(coco_dir, seg)
    except TicketlabError as e:
        check_refusal(e, coco_dir / "rle.json", "annotation id 4: 'segmentation'", "annotation id 4: RLE")
