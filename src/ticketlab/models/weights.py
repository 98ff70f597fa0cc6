"""Reading pretrained weights from local files, safely, and loading them with a useful error.

Paper 002 starts tickets from pretrained weights (`model.weights`). A weights file is user input,
so it is never unpickled: `.safetensors` files hold only tensors, and `.pth/.pt/.bin` files go
through `torch.load(weights_only=True)`, which refuses any pickled object other than tensors and
plain containers. A state_dict that does not fit the model is reported in one message listing the
missing, unexpected and shape-mismatched keys, instead of torch's multi-line traceback.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from ticketlab.errors import TicketlabError

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIXES = (".safetensors",)
WRAPPER_KEYS = ("state_dict", "model")


@dataclass
class LoadReport:
    """Keys of a state_dict that did not load as-is (empty lists = everything matched)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: file (a, b) vs model (c, d)"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def _shorten(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … (+{len(items) - limit} more)" if len(items) > limit else "")


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat name → tensor dict from a `.safetensors` or `.pth/.pt/.bin/.ckpt` file."""
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"model.weights={path}: file not found")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for bad headers
            raise TicketlabError(f"model.weights={path}: not a readable safetensors file ({e})") from None
    elif suffix in TORCH_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise TicketlabError(
                f"model.weights={path}: contains pickled Python objects other than tensors, which are "
                "never unpickled; re-save it as torch.save(model.state_dict(), …) or as .safetensors"
            ) from None
        except Exception as e:
            raise TicketlabError(f"model.weights={path}: not a readable torch file ({type(e).__name__})") from None
    else:
        raise TicketlabError(
            f"model.weights={path}: expected a .safetensors, .pth, .pt, .bin or .ckpt file, got {suffix or 'no suffix'!r}"
        )
    return _as_state_dict(obj, path)


def _as_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap {'state_dict': …} / {'model': …} checkpoints and a DDP 'module.' prefix."""
    if not isinstance(obj, dict):
        raise TicketlabError(f"model.weights={path}: expected a dict of tensors, got {type(obj).__name__}")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict):
            obj = inner
            break
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise TicketlabError(
            f"model.weights={path}: expected a state_dict of tensors; {len(bad)} entries are not tensors: {_shorten(bad)}"
        )
    state: dict[str, torch.Tensor] = dict(obj)  # type: ignore[arg-type]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def compare_state_dicts(model_state: dict[str, torch.Tensor], file_state: dict[str, torch.Tensor]) -> LoadReport:
    """Which keys are missing from the file, unexpected in it, or of the wrong shape."""
    report = LoadReport()
    report.missing = [k for k in model_state if k not in file_state]
    report.unexpected = [k for k in file_state if k not in model_state]
    for k, v in file_state.items():
        if k in model_state and tuple(v.shape) != tuple(model_state[k].shape):
            report.mismatched.append(f"{k}: file {tuple(v.shape)} vs model {tuple(model_state[k].shape)}")
    return report


def load_pretrained(
    module: nn.Module,
    path: str | Path,
    *,
    strict: bool = True,
    new_modules: Iterable[str] = (),
) -> LoadReport:
    """Load a torchvision-format state_dict file into `module` (in place).

    strict=True: any missing, unexpected or shape-mismatched key raises one TicketlabError, except
    keys under `new_modules` (module paths, e.g. ("fc",) for a fresh classifier head), which may be
    missing or of another shape and then keep their current init. strict=False loads whatever fits
    and returns the report of the rest.
    """
    return load_state_into(module, load_weights_file(path), path, strict=strict, new_modules=new_modules)


def load_state_into(
    module: nn.Module,
    file_state: dict[str, torch.Tensor],
    path: str | Path,
    *,
    strict: bool = True,
    new_modules: Iterable[str] = (),
) -> LoadReport:
    """`load_pretrained` for a state_dict already read from `path` (named in errors)."""
    model_state = module.state_dict()
    report = compare_state_dicts(model_state, file_state)
    new_modules = tuple(new_modules)
    blocking = LoadReport(
        missing=[k for k in report.missing if not _under(k, new_modules)],
        unexpected=list(report.unexpected),
        mismatched=[m for m in report.mismatched if not _under(m.split(":", 1)[0], new_modules)],
    )
    if strict and not blocking.ok:
        parts = []
        if blocking.missing:
            parts.append(f"{len(blocking.missing)} missing: {_shorten(blocking.missing)}")
        if blocking.unexpected:
            parts.append(f"{len(blocking.unexpected)} unexpected: {_shorten(blocking.unexpected)}")
        if blocking.mismatched:
            parts.append(f"{len(blocking.mismatched)} of another shape: {_shorten(blocking.mismatched, 3)}")
        raise TicketlabError(
            f"model.weights={path}: does not fit the model ({len(model_state)} keys) — " + "; ".join(parts)
        )
    bad_shape = {m.split(":", 1)[0] for m in report.mismatched}
    fitting = {k: v for k, v in file_state.items() if k in model_state and k not in bad_shape}
    module.load_state_dict(fitting, strict=False)
    return report
