"""Optimisers and learning-rate schedules.

Schedules (``build_scheduler``): ``cosine`` (per step; the last step uses a small rate, 0 is reached after it),
``step`` (x ``gamma`` every ``step_size`` epochs), ``none`` (constant) -- all with an optional linear ``warmup``
over the first steps --
and ``plateau`` (``ReduceLROnPlateau`` on the validation loss, stepped after each validation, or on the training
loss each epoch when the run has no validation data; no warmup).
"""
import math
from typing import Any, Optional

import torch

from ..errors import InputError


def build_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    """``adam``, ``adamw``, ``sgd`` (with ``momentum``, Nesterov when momentum > 0) or ``adagrad``."""
    name = name.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=momentum > 0)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    raise InputError(f"Unknown optimizer '{name}'; use adam, adamw, sgd or adagrad.")


class WarmupLambda:
    """Picklable LR factor ``f(step)``: linear warmup over ``warmup`` steps, then the schedule."""

    def __init__(self, schedule: str, total_steps: int, warmup: int = 0, steps_per_epoch: int = 1,
                 step_size: int = 30, gamma: float = 0.1) -> None:
        self.schedule, self.total_steps, self.warmup = schedule, max(1, int(total_steps)), max(0, int(warmup))
        self.steps_per_epoch, self.step_size, self.gamma = max(1, int(steps_per_epoch)), max(1, int(step_size)), gamma

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / float(self.warmup)
        if self.schedule == "cosine":
            span = max(1, self.total_steps - self.warmup)
            progress = min(1.0, (step - self.warmup) / float(span))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.schedule == "step":
            epoch = step // self.steps_per_epoch
            return self.gamma ** (epoch // self.step_size)
        return 1.0


SCHEDULES_OVER_TOTAL = ("cosine",)
"""Schedules whose rate at a step depends on the run's total steps (epochs x iterations per epoch): another
``--epochs`` on ``--resume`` would move every later step's rate (``step``, ``plateau`` and ``none`` do not
depend on it; a warmup counts steps from the start only)."""


def schedule_total_steps(name: str, epochs: int, steps_per_epoch: int) -> Optional[int]:
    """The total steps the schedule ``name`` is laid over (epochs x steps per epoch), or None for a schedule
    that does not depend on it (:data:`SCHEDULES_OVER_TOTAL`)."""
    return int(epochs) * int(steps_per_epoch) if name in SCHEDULES_OVER_TOTAL else None


def schedule_factor(name: str, total_steps: int, step: int, warmup: int = 0, steps_per_epoch: int = 1,
                    step_size: int = 30, gamma: float = 0.1) -> float:
    """The learning-rate factor (of ``lr``) the per-step schedule ``name`` over ``total_steps`` gives at
    ``step`` (steps done so far), as the scheduler computes it."""
    return WarmupLambda(name, total_steps, warmup, steps_per_epoch, step_size, gamma)(int(step))


def build_scheduler(name: str, optimizer, total_steps: int, steps_per_epoch: int, warmup: int = 0,
                    step_size: int = 30, gamma: float = 0.1, plateau_patience: int = 5,
                    plateau_factor: float = 0.5) -> Any:
    """Return a scheduler; per-step ones have ``per_step = True``, ``plateau`` has ``per_step = False``."""
    if name == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=plateau_factor,
                                                           patience=plateau_patience)
        sched.per_step = False
        return sched
    if name not in ("cosine", "step", "none"):
        raise InputError(f"Unknown schedule '{name}'; use cosine, step, plateau or none.")
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupLambda(name, total_steps, warmup, steps_per_epoch, step_size, gamma))
    sched.per_step = True
    return sched


def current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def scheduler_state(scheduler) -> dict:
    """State dict without the lambda objects (they are rebuilt from the config on resume)."""
    state = dict(scheduler.state_dict())
    state.pop("lr_lambdas", None)
    return state


def load_scheduler_state(scheduler, state: Optional[dict]) -> None:
    if not state:
        return
    state = dict(state)
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        state["lr_lambdas"] = [None] * len(scheduler.lr_lambdas)
    scheduler.load_state_dict(state)
