"""Resumable training checkpoints that are safe to load: safetensors + JSON, never pickle.

One file holds the model's state dict (`model/<name>`), the optimizer's state tensors
(`optim/<param index>/<key>`) and the torch RNG states (`rng/cpu`, `rng/cuda/<i>`; under DDP also
every other rank's, `rng/rank<r>/cpu`, …). The rest — the
optimizer's param groups and scalar state, the step, and the caller's `extra` — is JSON in the
safetensors metadata, with a sha256 over all of it so that a damaged file is refused with a clear
message instead of silently resuming from garbage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load as safetensors_load
from torch import nn
from torch.optim import Optimizer

from ticketlab.atomic import atomic_save_safetensors
from ticketlab.errors import TicketlabError
from ticketlab.rundir import CHECKPOINT_FILE  # noqa: F401  (the run dir owns level-file names)

FORMAT = "ticketlab-checkpoint/1"
_MODEL, _OPTIM, _RNG = "model/", "optim/", "rng/"


# ----------------------------------------------------------------------------------------------
# RNG


def capture_rng() -> dict[str, torch.Tensor]:
    """torch's CPU generator state and, when CUDA is initialised, every device's (uint8 tensors)."""
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            states[f"cuda/{i}"] = torch.cuda.get_rng_state(i)
    return states


def restore_rng(states: Mapping[str, torch.Tensor]) -> None:
    """Inverse of `capture_rng`; CUDA states for devices this machine lacks are ignored."""
    torch.set_rng_state(states["cpu"].to(torch.uint8))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"cuda/{i}" in states:
                torch.cuda.set_rng_state(states[f"cuda/{i}"].to(torch.uint8), i)


def merge_rank_rng(per_rank: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Every rank's `capture_rng()` as one dict: rank 0's under its own names, rank r's under `rank<r>/`."""
    merged = dict(per_rank[0])
    for r, states in enumerate(per_rank[1:], start=1):
        merged.update({f"rank{r}/{k}": v for k, v in states.items()})
    return merged


def rank_rng(states: Mapping[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """Inverse of `merge_rank_rng` for one rank."""
    if rank == 0:
        return {k: v for k, v in states.items() if not k.startswith("rank")}
    prefix = f"rank{rank}/"
    return {k[len(prefix):]: v for k, v in states.items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------------------------
# Optimizer state <-> (tensors, JSON)


def flatten_optimizer_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split `optimizer.state_dict()` into tensors named `<param index>/<key>` and a JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}/{key}"] = value.detach().to("cpu", copy=True)
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = []
    for group in state_dict["param_groups"]:
        for key, value in group.items():
            if isinstance(value, torch.Tensor):
                raise TypeError(f"optimizer param group holds a tensor under {key!r}; not supported")
        groups.append(dict(group))
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict:
    """Inverse of `flatten_optimizer_state` (tuples come back as lists; `load_optimizer_state` keeps the
    live optimizer's hyper-parameters anyway)."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split("/", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": [dict(g) for g in meta["param_groups"]]}


def check_optimizer_state(optimizer: Optimizer, state_dict: Mapping[str, Any], *, where: str) -> None:
    """Raise a TicketlabError naming `where` unless `state_dict` fits `optimizer`'s groups and shapes."""
    saved_groups, live_groups = state_dict["param_groups"], optimizer.param_groups
    if len(saved_groups) != len(live_groups):
        raise TicketlabError(f"{where}: optimizer state has {len(saved_groups)} param group(s), "
                             f"the optimizer has {len(live_groups)}")
    params = []
    for i, (saved, live) in enumerate(zip(saved_groups, live_groups)):
        if len(saved["params"]) != len(live["params"]):
            raise TicketlabError(f"{where}: optimizer param group {i} has {len(saved['params'])} "
                                 f"parameters in the saved state, {len(live['params'])} in the optimizer")
        params += list(zip(saved["params"], live["params"]))
    by_index = dict(params)
    for idx, entry in state_dict["state"].items():
        if idx not in by_index:
            raise TicketlabError(f"{where}: optimizer state for parameter #{idx}, which no group holds")
        shape = tuple(by_index[idx].shape)
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and tuple(value.shape) != shape:
                raise TicketlabError(f"{where}: optimizer state {key!r} of parameter #{idx} has shape "
                                     f"{tuple(value.shape)}, the parameter has {shape}")


def load_optimizer_state(optimizer: Optimizer, state_dict: Mapping[str, Any], *, where: str) -> None:
    """`optimizer.load_state_dict` after `check_optimizer_state`.

    Tensors are cloned: torch's loader keeps same-device tensors by reference, and the optimizer
    updates its state in place, which would otherwise change the caller's snapshot (e.g. a rewind
    point reused by every IMP level). The hyper-parameters (lr, momentum, weight decay, …) stay the
    live optimizer's, i.e. the config's: a level resumed with a lower `train.lr` trains at that rate.
    """
    check_optimizer_state(optimizer, state_dict, where=where)
    saved_groups, live_groups = state_dict["param_groups"], optimizer.param_groups
    state = {idx: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in entry.items()}
             for idx, entry in state_dict["state"].items()}
    state_dict = {"state": state, "param_groups": [{**live, "params": saved["params"]}
                                                   for saved, live in zip(saved_groups, live_groups)]}
    optimizer.load_state_dict(state_dict)


# ----------------------------------------------------------------------------------------------
# Checksum


def content_digest(tensors: Mapping[str, torch.Tensor], text: str) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (sorted by name), then `text`."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(text.encode("utf-8"))
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Save / load


def save_checkpoint(path: str | Path, *, model: nn.Module, optimizer: Optimizer, step: int,
                    rng: Mapping[str, torch.Tensor] | None = None, extra: Mapping[str, Any] | None = None
                    ) -> None:
    """Write model + optimizer + RNG (`capture_rng()` when `rng` is None) + step + extra, atomically.

    `extra` must be JSON-serialisable (floats, ints, strings, lists, dicts).
    """
    tensors = {_MODEL + k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
    tensors.update({_OPTIM + k: v for k, v in opt_tensors.items()})
    for k, v in (capture_rng() if rng is None else rng).items():
        tensors[_RNG + k] = v.detach().to("cpu", copy=True)
    text = json.dumps({"format": FORMAT, "step": int(step), "optimizer": opt_meta,
                       "extra": dict(extra or {})})  # key order kept: history columns follow it
    atomic_save_safetensors(path, tensors, {"ticketlab": text, "sha256": content_digest(tensors, text)})


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TicketlabError(f"{path}: cannot read checkpoint ({e.strerror})") from None
    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        meta = header.get("__metadata__") or {}
        tensors = safetensors_load(data)
    except Exception as e:  # safetensors raises its own error types; all mean "damaged"
        raise TicketlabError(f"{path}: not a readable safetensors checkpoint, the file is damaged "
                             f"({type(e).__name__}); delete it to restart the level") from None
    text, digest = meta.get("ticketlab"), meta.get("sha256")
    if text is None or digest is None:
        raise TicketlabError(f"{path}: not a ticketlab checkpoint (no ticketlab metadata)")
    if content_digest(tensors, text) != digest:
        raise TicketlabError(f"{path}: checkpoint checksum does not match its contents, the file is "
                             "corrupted; delete it to restart the level")
    info = json.loads(text)
    if info.get("format") != FORMAT:
        raise TicketlabError(f"{path}: checkpoint format {info.get('format')!r}, expected {FORMAT!r}")
    return tensors, info


def _check_model_fits(path: Path, model_state: Mapping[str, torch.Tensor],
                      saved: Mapping[str, torch.Tensor]) -> None:
    missing = [k for k in model_state if k not in saved]
    unexpected = [k for k in saved if k not in model_state]
    wrong = [f"{k} is {tuple(saved[k].shape)} in the checkpoint but {tuple(v.shape)} in the model"
             for k, v in model_state.items() if k in saved and tuple(saved[k].shape) != tuple(v.shape)]

    def few(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")

    problems = ([f"missing {few(missing)}"] if missing else []) + \
               ([f"unexpected {few(unexpected)}"] if unexpected else []) + \
               ([f"shape of {few(wrong)}"] if wrong else [])
    if problems:
        raise TicketlabError(f"{path}: checkpoint does not fit the model: " + "; ".join(problems))


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: Optimizer | None, *,
                    restore_rng_state: bool = True, rank: int = 0) -> tuple[int, dict]:
    """Load a `save_checkpoint` file into `model` (and `optimizer`); returns (step, extra).

    Names and shapes are checked first and nothing is changed when they do not fit. `rank` picks
    whose RNG state is restored (see `merge_rank_rng`).
    """
    path = Path(path)
    tensors, info = _read(path)
    model_saved = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    live = model.state_dict()
    _check_model_fits(path, live, model_saved)
    opt_state = None
    if optimizer is not None:
        opt_tensors = {k[len(_OPTIM):]: v for k, v in tensors.items() if k.startswith(_OPTIM)}
        opt_state = unflatten_optimizer_state(opt_tensors, info["optimizer"])
        check_optimizer_state(optimizer, opt_state, where=str(path))
    rng = rank_rng({k[len(_RNG):]: v for k, v in tensors.items() if k.startswith(_RNG)}, rank)
    if restore_rng_state and "cpu" not in rng:
        raise TicketlabError(f"{path}: checkpoint has no RNG state" + (f" for rank {rank}" if rank else ""))
    model.load_state_dict(model_saved, strict=True)
    if optimizer is not None and opt_state is not None:
        load_optimizer_state(optimizer, opt_state, where=str(path))
    if restore_rng_state:
        restore_rng(rng)
    return int(info["step"]), dict(info.get("extra") or {})


def clear_checkpoint(workdir: str | Path) -> bool:
    """Delete `workdir/checkpoint.safetensors` (once a level's results are saved); True if it existed."""
    path = Path(workdir) / CHECKPOINT_FILE
    if path.exists():
        path.unlink()
        return True
    return False
