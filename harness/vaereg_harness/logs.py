"""Training logs: the metrics log every run writes next to its checkpoint, the contract of a
tracker, and the built-in TensorBoard tracker (``--log tensorboard``), registered through the
``register_loggers`` hook exactly as a third party's tracker would be.

A record is written once per epoch (and once per iteration of a non-gradient fit), from
values the trainer accumulated on the device: a logger never touches the hot loop.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy
from torch import Tensor

from vaereg import UsageError, VaeregError, hookimpl
from vaereg.registry import get_registry
from vaereg_harness import hookspecs

VAEREG_PLUGIN_API = 3

Record = dict[str, Any]  # stage, epoch, step, images_per_s, lr, and every loss term's mean


class Logger:
    """A tracker: built with the run folder and the resolved run description (JSON-ready), fed
    one record at a time, closed when training ends. ``samples()`` draws a small batch of images
    (``[N, C, H, W]`` in [0, 1]) for trackers that show pictures; it costs nothing unless called."""

    def __init__(self, folder: Path, config: dict[str, Any]):
        pass

    def log(self, record: Record, samples: Callable[[], Tensor]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release what the tracker holds."""


class MetricsLog(Logger):
    """``metrics.jsonl`` in the run folder: one JSON object per line. A fresh run starts the
    file; a resumed one appends to it."""

    def __init__(self, folder: Path, config: dict[str, Any], *, resume: bool = False):
        self.path = folder / "metrics.jsonl"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.file = self.path.open("a" if resume else "w", encoding="utf-8")
        except OSError as exc:
            raise self.failed(exc) from None

    def log(self, record: Record, samples: Callable[[], Tensor]) -> None:
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as exc:  # a full disk: the lines before stay whole, the checkpoint is untouched
            raise self.failed(exc) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a failed write was reported already
            self.file.close()

    def failed(self, exc: OSError) -> VaeregError:
        return VaeregError(f"cannot write {self.path}: {exc.strerror or exc}; the last checkpoint is intact "
                           f"(vaereg report skips a line the disk cut short)")


class TensorBoardLogger(Logger):
    """Scalars of every record and a grid of 16 samples per epoch, through
    ``torch.utils.tensorboard``, in ``<run folder>/tensorboard``."""

    def __init__(self, folder: Path, config: dict[str, Any]):
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
    from vaereg_harness.cluster.trials import TrialReporter  # imports this module

    register("tensorboard", TensorBoardLogger)
    register("optuna", TrialReporter)


def loggers() -> dict[str, tuple[type, str]]:
    """Every tracker the loaded plugins register through ``register_loggers``: name -> (class,
    plugin). Two plugins registering one name is an error naming both."""
    manager = pluggy.PluginManager("vaereg")
    manager.add_hookspecs(hookspecs)
    found: dict[str, tuple[type, str]] = {}
    for info in get_registry().loaded:
        impl = getattr(info.module, "register_loggers", None)
        if impl is None:
            continue

        def register(name: str, cls: type, plugin: str = info.name) -> None:
            if name in found:
                raise UsageError(f"logger {name!r} is registered by two plugins: {found[name][1]!r} and {plugin!r}; "
                                 f"rename it in plugin {plugin!r}")
            found[name] = (cls, plugin)

        impl(register=register)
    return found


def logger_class(name: str) -> type[Logger]:
    """The tracker ``--log NAME`` turns on, or a usage error listing the known ones."""
    known = loggers()
    if name not in known:
        raise UsageError(f"unknown logger {name!r} for --log; known loggers: {', '.join(sorted(known)) or 'none'}")
    return known[name][0]
