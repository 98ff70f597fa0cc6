"""Property tests (hypothesis) for the VOC XML reader, the config loader and the mask loader: any
hostile file is either read or refused with ONE `TicketlabError` line that names the file (and the
field, where there is one); never another exception. Bounded and derandomized for CI.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ticketlab.config import flatten, load_config, to_dict
from ticketlab.data.voc import read_image_set, voc_to_coco
from ticketlab.errors import TicketlabError
from ticketlab.sparsity.mask_io import load_any_mask, load_mask, save_mask

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REPO = Path(__file__).resolve().parents[1]


def check_refusal(error: TicketlabError, path: Path, *fields: str) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert str(path) in message, message
    if fields:
        assert any(f in message for f in fields), (fields, message)


texts = st.one_of(st.sampled_from(["", " ", "12", "-3", "1e9", "nan", "inf", "-inf", "0", "1.5", "abc", "1e400",
                                   "9" * 30, "cat", "dog", "person"]), st.text(max_size=6))

# -- VOC -------------------------------------------------------------------------------------------

VOC_FIELDS = ["filename", "size/width", "size/height", "object/name", "object/difficult",
              "object/bndbox/xmin", "object/bndbox/ymin", "object/bndbox/xmax", "object/bndbox/ymax"]


def voc_xml(values: dict[str, str | None]) -> str:
    """A VOC annotation with one object; a field whose value is None is left out."""
    def tag(path: str) -> str:
        value = values.get(path)
        name = path.rsplit("/", 1)[-1]
        return "" if value is None else f"<{name}>{value}</{name}>"
    return (f"<annotation>{tag('filename')}<size>{tag('size/width')}{tag('size/height')}<depth>3</depth></size>"
            f"<object>{tag('object/name')}{tag('object/difficult')}<bndbox>{tag('object/bndbox/xmin')}"
            f"{tag('object/bndbox/ymin')}{tag('object/bndbox/xmax')}{tag('object/bndbox/ymax')}</bndbox>"
            "</object></annotation>")


VALID_VOC = {"filename": "000001.jpg", "size/width": "40", "size/height": "30", "object/name": "dog",
             "object/difficult": "0", "object/bndbox/xmin": "3", "object/bndbox/ymin": "4",
             "object/bndbox/xmax": "20", "object/bndbox/ymax": "25"}


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("voc")
    for d in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (root / d).mkdir(parents=True)
    (root / "ImageSets/Main/one.txt").write_text("000001\n")
    return root


@SETTINGS
@given(edits=st.dictionaries(st.sampled_from(VOC_FIELDS), st.one_of(st.none(), texts), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 400)))
def test_hostile_voc_xml_is_read_or_refused_in_one_line(voc_root, edits, cut):
    xml = voc_xml({**VALID_VOC, **edits})
    xml = xml if cut is None else xml[:cut]  # truncated
    path = voc_root / "Annotations/000001.xml"
    path.write_text(xml)
    try:
        coco = voc_to_coco(voc_root, "one")
    except TicketlabError as e:
        check_refusal(e, path)
        return
    (ann,) = coco["annotations"] or [None]
    if ann is not None:  # what was read is a box inside its image
        x, y, w, h = ann["bbox"]
        assert all(math.isfinite(v) for v in (x, y, w, h)) and w >= 0 and h >= 0


@SETTINGS
@given(lines=st.lists(st.one_of(st.sampled_from(["../../etc/passwd", "..", "a/b", "000001", "x y", "\x00"]),
                                st.text(max_size=8)), max_size=4))
def test_hostile_image_set_is_read_or_refused_in_one_line(voc_root, lines):
    path = voc_root / "ImageSets/Main/hostile.txt"
    path.write_text("\n".join(lines))
    try:
        ids = read_image_set(voc_root, "hostile")
    except TicketlabError as e:
        check_refusal(e, path, "image id")
        return
    for stem in ids:  # never a path out of Annotations/
        assert (voc_root / "Annotations" / f"{stem}.xml").resolve().parent == (voc_root / "Annotations").resolve()


def test_image_set_not_utf8(voc_root):
    path = voc_root / "ImageSets/Main/latin1.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(TicketlabError, match="not UTF-8") as e:
        read_image_set(voc_root, "latin1")
    check_refusal(e.value, path)


# -- configs ---------------------------------------------------------------------------------------

KEYS = [("train", "lr"), ("train", "batch_size"), ("train", "duration"), ("train", "milestones"), ("train", "amp"),
        ("prune", "rate"), ("prune", "levels"), ("prune", "strategy"), ("prune", "scope"), ("model", "width"),
        ("model", "detection"), ("model", "family"), ("data", "image_size"), ("data", "format"), ("task",)]
yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
              st.text(max_size=8), st.sampled_from(["1e-3", "20ep", "500it", "global", ".nan", "a\nb"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)


@SETTINGS
@given(edits=st.lists(st.tuples(st.sampled_from(KEYS), yaml_values), min_size=1, max_size=3),
       extra=st.dictionaries(st.one_of(st.sampled_from(["a\nb", "lrr", "trian"]), st.text(max_size=6)), yaml_values,
                             max_size=2))
def test_wrong_values_for_config_keys_are_refused_in_one_line(tmp_path_factory, edits, extra):
    data = yaml.safe_load((REPO / "configs/digits_lenet.yaml").read_text())
    for key, value in edits:
        node = data
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    data.update(extra)
    path = tmp_path_factory.mktemp("cfg") / "hostile.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        cfg = load_config(path)
    except TicketlabError as e:
        check_refusal(e, path, "config key", "unknown config key")
        return
    numbers = [v for v in flatten(to_dict(cfg)).values() if isinstance(v, float)]
    assert all(math.isfinite(v) for v in numbers)  # a NaN learning rate is no config


@SETTINGS
@given(text=st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1"))),
       cut=st.integers(0, 2000))
def test_truncated_or_garbage_config_is_refused_in_one_line(tmp_path_factory, text, cut):
    path = tmp_path_factory.mktemp("cfg") / "garbage.yaml"
    path.write_bytes((REPO / "configs/digits_lenet.yaml").read_bytes()[:cut] + text.encode("utf-8", "surrogatepass"))
    try:
        load_config(path)
    except TicketlabError as e:
        check_refusal(e, path)


# -- masks -----------------------------------------------------------------------------------------

SHAPES = {"layer1.weight": (7, 5), "fc.bias": (3,)}


@pytest.fixture(scope="module")
def mask_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("mask") / "mask.safetensors"
    g = torch.Generator().manual_seed(0)
    save_mask(path, {k: torch.rand(s, generator=g) < 0.5 for k, s in SHAPES.items()})
    return path.read_bytes()


def header_of(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n])


def with_header(data: bytes, header: dict) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n:]


@SETTINGS
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 600)), expect=st.booleans())
def test_corrupted_mask_bytes_are_refused_in_one_line(tmp_path_factory, mask_bytes, flips, cut, expect):
    data = bytearray(mask_bytes)
    for pos, value in flips:
        data[pos % len(data)] = value
    data = data if cut is None else data[:cut]
    path = tmp_path_factory.mktemp("mask") / "mask.safetensors"
    path.write_bytes(bytes(data))
    try:
        mask = load_any_mask(path, SHAPES if expect else None)
    except TicketlabError as e:
        check_refusal(e, path)
        return
    for name, m in mask.items():  # what was read is a bool mask of the shape it declares
        assert m.dtype == torch.bool
        if expect:
            assert tuple(m.shape) == SHAPES[name]


@SETTINGS
@given(meta=st.dictionaries(st.sampled_from(["format", "bitorder", "shapes"]),
                            st.one_of(st.text(max_size=8), yaml_values.map(json.dumps),
                                      st.sampled_from(['{"layer1.weight": [5, 7], "fc.bias": [3]}',
                                                       '{"layer1.weight": [35], "fc.bias": [3]}',
                                                       '{"layer1.weight": [-7, -5], "fc.bias": [3]}',
                                                       '{"a\\nb": [1]}'])), max_size=3),
       dtype=st.sampled_from([None, "U8", "F32", "I64", "BOOL"]), shape=st.one_of(st.none(), st.lists(st.integers(0, 9), max_size=3)))
@example(meta={"shapes": '{"a\\nb": [35], "fc.bias": [3]}'}, dtype=None, shape=None)  # was two lines
def test_wrong_mask_metadata_and_shapes_are_refused_in_one_line(tmp_path_factory, mask_bytes, meta, dtype, shape):
    header = header_of(mask_bytes)
    header["__metadata__"].update(meta)
    if dtype is not None:
        header["layer1.weight"]["dtype"] = dtype
    if shape is not None:
        header["layer1.weight"]["shape"] = shape
    path = tmp_path_factory.mktemp("mask") / "mask.safetensors"
    path.write_bytes(with_header(mask_bytes, header))
    try:
        mask = load_mask(path, SHAPES)
    except TicketlabError as e:
        check_refusal(e, path)
        return
    assert {k: tuple(v.shape) for k, v in mask.items()} == SHAPES
