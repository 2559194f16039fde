"""Epoch-end callbacks: best-checkpoint tracking and early stopping. Both keep their state in plain
numbers so it round-trips through the checkpoint's JSON ``state``."""
import math
from typing import Any, Dict, Optional


class BestTracker:
    """Remembers the best validation score (higher is better) and the epoch it was reached."""

    def __init__(self) -> None:
        self.best: Optional[float] = None
        self.best_epoch: int = -1

    def update(self, score: float, epoch: int) -> bool:
        """True when ``score`` is a new best (NaN never is)."""
        if score is None or math.isnan(score):
            return False
        if self.best is None or score > self.best:
            self.best, self.best_epoch = float(score), int(epoch)
            return True
        return False

    def state(self) -> Dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load(self, state: Dict[str, Any]) -> None:
        self.best, self.best_epoch = state.get("best"), int(state.get("best_epoch", -1))


class EarlyStopping:
    """Stop after ``patience`` validations without improvement of the score (0 = never stop)."""

    def __init__(self, patience: int = 0) -> None:
        self.patience = int(patience)
        self.bad_epochs = 0

    def update(self, improved: bool) -> bool:
        """Record one validation; True when training should stop."""
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        return self.stopped

    @property
    def stopped(self) -> bool:
        """Whether the recorded validations call for a stop (also for a state loaded from a checkpoint)."""
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state(self) -> Dict[str, Any]:
        return {"bad_epochs": self.bad_epochs}

    def load(self, state: Dict[str, Any]) -> None:
        self.bad_epochs = int(state.get("bad_epochs", 0))


def validation_score(liver_dice: float, tumor_dice: float) -> float:
    """The score the best checkpoint and early stopping follow: mean of liver and tumor Dice
    (liver alone when tumor Dice is undefined)."""
    if tumor_dice is None or math.isnan(tumor_dice):
        return liver_dice
    return 0.5 * (liver_dice + tumor_dice)
