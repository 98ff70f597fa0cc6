"""Object crops of the synthetic scenes as an image-folder classification set.

Paper 002's flow pre-trains a backbone (supervised, SimCLR, MoCo) on object-centric images and
transfers its tickets to detection. At CPU scale the objects of the synthetic scenes play that
part: `write_crops` draws exactly the scenes `generate_synthetic` writes for the same SynthConfig
(same per-image seeds), cuts every object whose visible area is at least `min_area` pixels out of
its scene — a square around its visible box, widened by `pad` on each side and clipped to the
image — resizes it to `crop_size` and writes `out/{train,val}/<class>/<image>_<object>.png`, the
layout `data.format: imagefolder` reads. The crops show the scene around the object (occluders,
background), as a crop of a photograph would. `out/crops.json` records the options and the counts
per class; it is written last, so it marks a finished set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ticketlab.atomic import atomic_write_json
from ticketlab.config import option
from ticketlab.data.synth.config import SynthConfig
from ticketlab.data.synth.generate import SPLITS
from ticketlab.data.synth.scene import SceneObject, make_scene
from ticketlab.errors import TicketlabError

SUMMARY = "crops.json"


@dataclass
class CropConfig:
    crop_size: int = option(32, "side of the square crops in pixels")
    pad: float = option(0.15, "context added around the visible box on each side, as a fraction of its longer side")
    min_area: int = option(64, "objects with fewer visible pixels are skipped (too small to recognise)")

    def validate(self) -> None:
        if self.crop_size < 4:
            raise TicketlabError(f"crops.crop_size: must be at least 4, got {self.crop_size}")
        if not 0.0 <= self.pad <= 1.0:
            raise TicketlabError(f"crops.pad: must be in [0, 1], got {self.pad}")
        if self.min_area < 1:
            raise TicketlabError(f"crops.min_area: must be positive, got {self.min_area}")


def crop_box(mask: np.ndarray, pad: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the square around the visible part of `mask`, padded, clipped to the image."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * pad)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    h, w = mask.shape
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    return (max(0, int(round(box[0]))), max(0, int(round(box[1]))),
            min(w, int(round(box[2]))), min(h, int(round(box[3]))))


def _crops(image: np.ndarray, objects: list[SceneObject], cfg: CropConfig) -> list[tuple[str, Image.Image]]:
    out = []
    for obj in objects:
        if int(obj.mask.sum()) < cfg.min_area:
            continue
        crop = Image.fromarray(image).crop(crop_box(obj.mask, cfg.pad))
        out.append((obj.cls, crop.resize((cfg.crop_size, cfg.crop_size), Image.BILINEAR)))
    return out


def write_crops(out_dir: str | Path, synth: SynthConfig | None = None, cfg: CropConfig | None = None) -> dict:
    """Write the crop set under `out_dir`; returns the summary (also in `out_dir/crops.json`)."""
    synth, cfg = synth or SynthConfig(), cfg or CropConfig()
    synth.validate()
    cfg.validate()
    out = Path(out_dir)
    counts: dict[str, dict[str, int]] = {}
    for split_id, (split, n) in enumerate(zip(SPLITS, (synth.n_train, synth.n_val))):
        per_class = {c: 0 for c in synth.classes}
        for idx in range(n):
            image, objects = make_scene(synth, np.random.default_rng([synth.seed, split_id, idx]))
            for k, (cls, crop) in enumerate(_crops(image, objects, cfg)):
                path = out / split / cls / f"{idx:06d}_{k:02d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                crop.save(path, format="PNG", compress_level=1)
                per_class[cls] += 1
        counts[split] = per_class
    missing = [c for c in synth.classes if counts["train"][c] == 0]
    if missing:
        raise TicketlabError(f"synth crops: no training crop of class {', '.join(missing)}; write more images "
                             "(--n-train) or lower --min-area")
    summary = {"synth": dataclasses.asdict(synth), "crops": dataclasses.asdict(cfg), "counts": counts}
    atomic_write_json(out / SUMMARY, summary)
    return summary
