"""One training loop for every task: optimizer, schedule, AMP, checkpoints, history.

`train_level` trains one IMP level (dense or masked, fresh, late-reset or resumed); the rest is
exported for the lottery layer (rewind snapshots, checkpoint I/O) and for tests.
"""

from ticketlab.train.checkpoint import (
    CHECKPOINT_FILE,
    capture_rng,
    clear_checkpoint,
    flatten_optimizer_state,
    load_checkpoint,
    load_optimizer_state,
    restore_rng,
    save_checkpoint,
    unflatten_optimizer_state,
)
from ticketlab.train.data_order import derive_seed, epoch_permutation, steps_per_epoch
from ticketlab.train.device import deterministic_mode, resolve_device, seed_everything
from ticketlab.train.history import HISTORY_FILE, drop_after, read_history, write_history
from ticketlab.train.loop import Enforcer, LevelRequest, LevelRun, Plan, TrainResult, evaluate, plan_level, train_level
from ticketlab.train.schedule import LrSchedule, apply_lr, build_optimizer, lr_factor, schedule_from_config

__all__ = [
    "CHECKPOINT_FILE", "HISTORY_FILE", "Enforcer", "LrSchedule", "Plan", "TrainResult",
    "apply_lr", "build_optimizer", "capture_rng", "clear_checkpoint", "derive_seed", "deterministic_mode",
    "drop_after", "epoch_permutation", "evaluate", "flatten_optimizer_state", "load_checkpoint",
    "load_optimizer_state", "lr_factor", "plan_level", "read_history", "resolve_device", "restore_rng",
    "save_checkpoint", "schedule_from_config", "seed_everything", "steps_per_epoch", "train_level", "LevelRequest", "LevelRun",
    "unflatten_optimizer_state", "write_history",
]
