"""Per-epoch training history: a CSV of metrics and the loss / mAP curves as a picture."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from reid.io import atomic_write, atomic_write_text


class History:
    """Rows of {epoch, losses, lr, images_per_second, and metrics of evaluated epochs}."""

    def __init__(self, rows: list[dict] | None = None) -> None:
        self.rows = list(rows or [])

    def add(self, row: dict) -> None:
        self.rows.append({key: (float(v) if isinstance(v, (int, float)) and key != "epoch" else v)
                          for key, v in row.items()})

    def truncate(self, epochs_done: int) -> None:
        """Forget epochs that a resumed run will redo."""
        self.rows = [row for row in self.rows if row["epoch"] <= epochs_done]

    def write_csv(self, path: str | Path) -> Path:
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns)
        writer.writeheader()
        writer.writerows(self.rows)
        return atomic_write_text(path, buffer.getvalue())

    def plot(self, path: str | Path, title: str = "") -> Path:
        """Save the curves (losses, evaluations, learning rate) as a picture."""
        import matplotlib.pyplot as plt

        figure = self.figure(title)
        path = Path(path)
        atomic_write(path, lambda temporary: figure.savefig(temporary, format=path.suffix.lstrip(".") or "png",
                                                            dpi=110))
        plt.close(figure)
        return path

    def figure(self, title: str = ""):
        """The curves' matplotlib figure; each legend sits below its plot, so it never covers a curve."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (losses, accuracy, rates) = plt.subplots(1, 3, figsize=(15, 4.8))
        epochs = [row["epoch"] for row in self.rows]
        for key in [k for k in self.rows[0] if k.startswith("loss")] if self.rows else []:
            losses.plot(epochs, [row.get(key) for row in self.rows], marker=".", label=key.removeprefix("loss_"))
        losses.set_xlabel("epoch")
        losses.set_ylabel("training loss")
        for key in sorted({k for row in self.rows for k in row if k.endswith(("mAP", "rank1"))}):
            points = [(row["epoch"], row[key]) for row in self.rows if row.get(key) is not None]
            if points:
                accuracy.plot(*zip(*points, strict=True), marker="o", label=key)
        accuracy.set_xlabel("epoch")
        accuracy.set_ylabel("evaluation (%)")
        rates.plot(epochs, [row.get("lr") for row in self.rows], marker=".", color="tab:purple", label="lr")
        rates.set_xlabel("epoch")
        rates.set_ylabel("learning rate (end of epoch)")
        rates.set_yscale("log")
        for axis in (losses, accuracy, rates):
            axis.grid(alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize="small",
                            frameon=False)
        figure.suptitle(title)
        figure.tight_layout()
        return figure
