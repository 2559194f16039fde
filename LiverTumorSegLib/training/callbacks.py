"""Epoch-end callbacks: best-checkpoint tracking and early stopping. Both keep their state in plain
numbers so it round-trips through the checkpoint's JSON ``state``. And what a run decided on its validation cases
(:func:`validation_selection`), which its package and crossval's table report."""
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


LAST_EPOCH, BEST_ON_VALIDATION = "last_epoch", "best_on_validation"
"""A package's ``training.weights`` / ``validation.weights``: the weights at the end of training (the last epoch's;
after a time-limit stop mid-epoch, the last step's: ``weights_note`` says so), or those of the epoch with the best
validation score (``use_best_checkpoint``). ``weights_global_step`` is the step they were taken after."""

OPTIMISTIC_NOTE = "selected on these validation cases (optimistic)"
"""How a package (``validation.note``) and crossval (its ``selected_on_validation`` column, crossval.json's note)
mark validation numbers of a run that made a decision on its own validation cases."""


def validation_selection(config: Any, has_validation: bool, best_used: bool, best_epoch: int,
                         epochs_done: int, stopped_early: bool, weights_global_step: Optional[int] = None,
                         steps_after_epoch: int = 0) -> Dict[str, Any]:
    """Which weights a run packages and what it decided on its validation cases, for the package's metadata
    and crossval's table: ``weights`` (:data:`LAST_EPOCH` or :data:`BEST_ON_VALIDATION`), ``weights_epoch`` (the
    best epoch, or the last epoch completed), ``weights_global_step`` (the training step the weights were taken
    after, when given), ``weights_note`` when the last weights hold ``steps_after_epoch`` steps of the epoch after
    ``epochs_done`` (a time-limit stop mid-epoch), ``decided_on_validation`` (the choices the validation cases drove: the packaged epoch, when training
    stopped, the learning rate), ``optimistic`` (any of them: the validation Dice of these weights was then
    measured on cases that chose them, not on unseen ones) and, when so, ``note``. Early stopping and the
    plateau schedule count whenever they watched validation cases, as the user asked for them, even where
    they changed nothing in the end (it is recorded whether early stopping stopped the run)."""
    decided = []
    if has_validation and best_used:
        decided.append(f"packaged weights: the best validation epoch ({best_epoch} of {epochs_done}; "
                       f"use_best_checkpoint)")
    if has_validation and int(config.early_stopping_patience) > 0:
        decided.append(f"early stopping on the validation score (patience {config.early_stopping_patience} "
                       f"validations; {'it stopped the run' if stopped_early else 'it did not stop the run'})")
    if has_validation and config.schedule == "plateau":
        decided.append(f"learning rate: plateau schedule on the validation loss (patience {config.plateau_patience}, "
                       f"factor {config.plateau_factor:g})")
    selection = {"weights": BEST_ON_VALIDATION if best_used else LAST_EPOCH,
                 "weights_epoch": int(best_epoch) if best_used else int(epochs_done),
                 **({} if weights_global_step is None else {"weights_global_step": int(weights_global_step)}),
                 "decided_on_validation": decided, "optimistic": bool(decided)}
    if not best_used and steps_after_epoch > 0:
        selection["weights_note"] = (f"the weights after epoch {int(epochs_done)} and {int(steps_after_epoch)} "
                                     f"step(s) of epoch {int(epochs_done) + 1}, where the time limit stopped the run")
    if decided:
        selection["note"] = f"{OPTIMISTIC_NOTE}: {'; '.join(decided)}"
    if config.use_best_checkpoint and not best_used and has_validation:
        selection["use_best_checkpoint_unused"] = ("no validation with a finite score ran before the end: the last "
                                                   "epoch's weights were packaged")
    return selection
