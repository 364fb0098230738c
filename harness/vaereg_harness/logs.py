"""Training logs: the metrics log every run writes next to its checkpoint, the contract of a
tracker, and the built-in TensorBoard tracker (``--log tensorboard``), registered through the
``register_loggers`` hook exactly as a third party's tracker would be.

A record is written once per epoch (and once per iteration of a non-gradient fit), from
values the trainer accumulated on the device: a logger never touches the hot loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from vaereg import hookimpl

Record = dict[str, Any]  # stage, epoch, step, images_per_s, lr, and every loss term's mean


class Logger:
    """A tracker: built with the run folder and the resolved run config (JSON-ready), fed one
    record at a time, closed when training ends. ``samples()`` draws a small batch of images
    (``[N, C, H, W]`` in [0, 1]) for trackers that show pictures; it costs nothing unless called."""

    def __init__(self, folder: Path, config: dict[str, Any]):
        self.folder, self.config = folder, config

    def log(self, record: Record, samples: Callable[[], Tensor]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release what the tracker holds."""


class MetricsLog(Logger):
    """``metrics.jsonl`` in the run folder: one JSON object per line. A fresh run starts the
    file; a resumed one appends to it."""

    def __init__(self, folder: Path, config: dict[str, Any], *, resume: bool = False):
        super().__init__(folder, config)
        self.path = folder / "metrics.jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a" if resume else "w", encoding="utf-8")

    def log(self, record: Record, samples: Callable[[], Tensor]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardLogger(Logger):
    """Scalars of every record and a grid of 16 samples per epoch, through
    ``torch.utils.tensorboard``, in ``<run folder>/tensorboard``."""

    def __init__(self, folder: Path, config: dict[str, Any]):
        super().__init__(folder, config)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder / "tensorboard"))
        self.writer.add_text("config", f"```\n{json.dumps(config, indent=2)}\n```")

    def log(self, record: Record, samples: Callable[[], Tensor]) -> None:
        step = record["step"]
        for key, value in record.items():
            if isinstance(value, int | float) and key not in ("step", "epoch"):
                self.writer.add_scalar(f"{record['stage']}/{key}", value, step)
        if "epoch" in record:
            from torchvision.utils import make_grid

            self.writer.add_image(f"{record['stage']}/samples", make_grid(samples(), nrow=4), step)

    def close(self) -> None:
        self.writer.close()


@hookimpl
def register_loggers(register):
    register("tensorboard", TensorBoardLogger)
