"""Training logs: a per-epoch CSV, optional TensorBoard scalars, and a PNG of loss and Dice curves."""
import csv
import io
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

LOG_COLUMNS = ["epoch", "global_step", "train_loss", "val_loss", "val_liver_dice", "val_tumor_dice", "lr",
               "epoch_time_s", "epoch_steps"]
"""One row per epoch. ``lr`` is the learning rate after the epoch's last step (the rate the next step uses; 0 at
the end of a cosine schedule), not the one its steps used. ``epoch_steps``: the steps (batches) the row's epoch
trained, ``iterations_per_epoch`` for a whole epoch and fewer for the epoch a time limit stopped (its row has no
validation; ``--resume`` drops it and logs that epoch again when it ends). Empty in rows of older versions."""


class CsvLog:
    """Appends one row per epoch to ``path`` (header written once; a resumed run keeps appending).

    A row that cannot be written (Windows refuses a file open in Excel; a full disk) does not stop training: it is
    kept, ``notice`` says so once, and it is written with the next row that can be. Training had ended with the
    epoch's checkpoint unsaved, after hours of work, because its log was open in a spreadsheet."""

    def __init__(self, path, notice: Optional[Callable[[str], None]] = None) -> None:
        self.path = Path(path)
        self.notice = notice
        self.unwritten = []  # type: List[Dict[str, str]]
        self._noticed = False

    def truncate_after(self, epoch: int) -> None:
        """Drop rows with epoch > ``epoch`` (rows a killed run wrote after its last checkpoint); all of them when the
        file is not as this class writes it (saved from a spreadsheet with semicolons and decimal commas: ``--resume``
        ended in "internal error: KeyError: 'epoch'"), which the trainer then writes again from its checkpoint."""
        rows = read_log(self.path)
        try:
            kept = [r for r in rows if int(float(r["epoch"])) <= epoch]
        except (KeyError, TypeError, ValueError):
            kept = []
            if self.notice is not None:
                self.notice(f"warning: {self.path} is not a CSV as training writes it (saved from a spreadsheet, with "
                            f"another separator or decimal mark?); its rows are written again from the checkpoint.")
        if len(kept) != len(rows):
            self._write(kept)

    def _write(self, rows: List[Dict[str, str]]) -> None:
        with open(self.path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: r.get(k, "") for k in LOG_COLUMNS})

    def append(self, row: Dict[str, float]) -> bool:
        """Add ``row`` (with any rows kept from earlier failures); False when the file could not be written."""
        self.unwritten.append({k: _fmt(row.get(k)) for k in LOG_COLUMNS})
        return self.flush()

    def flush(self) -> bool:
        """Write the rows kept from earlier failures; False when the file still cannot be written."""
        if not self.unwritten:
            return True
        try:  # a file a failed write left empty (a full disk) gets its header too: --resume reads rows by it
            new = not self.path.is_file() or self.path.stat().st_size == 0
            if not new and _header(self.path) != LOG_COLUMNS:  # an older version's columns: rows under one header
                self._write(read_log(self.path))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", newline="", encoding="utf-8") as handle:
                text = io.StringIO()
                writer = csv.DictWriter(text, fieldnames=LOG_COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerows(self.unwritten)
                handle.write(text.getvalue())  # one write: a failure leaves no half of the rows behind
        except OSError as exc:
            if self.notice is not None and not self._noticed:
                self.notice(f"warning: cannot write {self.path} ({exc.strerror or exc}; is it open in another "
                            f"program?); training goes on, and its rows are written once the file can be.")
                self._noticed = True
            return False
        self.unwritten = []
        return True


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _header(path) -> List[str]:
    """The column names on the first line of the CSV file ``path`` (bytes that are no UTF-8 read as U+FFFD)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        return next(csv.reader(handle), [])


def read_log(path) -> List[Dict[str, str]]:
    """The rows of the log ``path`` ([] when there is none); a byte-order mark, which Excel's "CSV UTF-8" writes, is
    skipped (it was read into the first column's name, and ``--resume`` ended in "internal error: KeyError"); bytes
    that are no UTF-8 (a damaged file, one saved in another encoding) are read as U+FFFD, so such rows are not as
    training writes them (:meth:`CsvLog.truncate_after` writes them again from the checkpoint): ``--resume`` ended in
    "internal error: UnicodeDecodeError"."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        return list(csv.DictReader(handle))


TENSORBOARD_MISSING = ("TensorBoard logs off: the tensorboard package is not installed (it comes with the train "
                       "extra: pip install -e \".[train]\", or pip install tensorboard); log.csv and curves.png are "
                       "still written (--no-tensorboard hides this notice).")


class TensorBoardLog:
    """Scalars to TensorBoard when ``torch.utils.tensorboard`` works; otherwise a one-line notice and no-ops."""

    def __init__(self, log_dir, enabled: bool = True, notice: Callable[[str], None] = print,
                 purge_step: Optional[int] = None) -> None:
        """``purge_step``: a resumed run's first step; TensorBoard hides the events an earlier writer logged from
        it on (the interrupted run's last epoch would otherwise show twice)."""
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            notice(TENSORBOARD_MISSING)
            return
        except Exception as exc:  # noqa: BLE001 - tensorboard installed but broken
            notice(f"TensorBoard logs off: tensorboard failed to load ({type(exc).__name__}: {exc}); log.csv and "
                   f"curves.png are still written (--no-tensorboard hides this notice).")
            return
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: Dict[str, Optional[float]], step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


TENSORBOARD_EVENT_FILES = "events.out.tfevents.*"
"""The names of the event files TensorBoard's ``SummaryWriter`` writes into its folder."""


def remove_tensorboard_events(folder) -> None:
    """Remove the TensorBoard event files (:data:`TENSORBOARD_EVENT_FILES`) an earlier run wrote into ``folder``
    (``<log_dir>/tensorboard``), then ``folder`` itself when that leaves it empty; its subfolders and other files
    stay (never raises). The whole folder was removed, and with it the user's other runs' logs kept in it
    (``--log-dir experiments --overwrite`` deleted ``experiments/tensorboard/other_run/``)."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return
    for path in folder.glob(TENSORBOARD_EVENT_FILES):
        if path.is_file() and not path.is_symlink():
            try:
                path.unlink()
            except OSError:
                pass
    try:
        folder.rmdir()
    except OSError:  # not empty: the user's files
        pass


def plot_curves(log_path, png_path) -> Optional[Path]:
    """Two panels: train/val loss and val liver/tumor Dice per epoch (a bare Agg figure: the caller's pyplot
    backend is left as it was). None when no rows."""
    rows = read_log(log_path)
    if not rows:
        return None
    from ..metrics.report import agg_subplots

    def col(name: str) -> Sequence[float]:
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]

    epochs = col("epoch")

    def plot(ax, name: str, label: str) -> None:
        """One series over the epochs that have a value, with markers: with --val-every above 1 the epochs without
        validation are empty (NaN), which broke the line into single points that drew nothing (the training
        audit: an empty Dice panel and no val-loss line)."""
        pairs = [(e, v) for e, v in zip(epochs, col(name)) if v == v]
        ax.plot([e for e, _ in pairs], [v for _, v in pairs], marker="o", markersize=3, label=label)

    fig, (ax1, ax2) = agg_subplots((10, 4), 1, 2)
    plot(ax1, "train_loss", "train loss")
    plot(ax1, "val_loss", "val loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    plot(ax2, "val_liver_dice", "liver Dice")
    plot(ax2, "val_tumor_dice", "tumor Dice")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("Dice (validation)")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.tight_layout()
    png_path = Path(png_path)
    from ..fileutil import atomic_output

    with atomic_output(png_path, overwrite=True) as tmp:  # a run stopped while it was written left half a picture
        fig.savefig(str(tmp), dpi=100, format="png")
    return png_path
