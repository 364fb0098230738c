"""What a run is asked for, as typed options: training (``TrainConfig``) and everything else
(``RunConfig``), each checked against its declared types and ranges when it is built; and the
device and seeding they imply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch

from vaereg import Range, UsageError
from vaereg.config import check
from vaereg_harness.launch import distributed


@dataclass
class TrainConfig:
    """``batch_size``: images per optimiser step, over every rank together. ``prior_epochs``:
    epochs of a prior fitted by gradient after the autoencoder (default: ``epochs``).
    ``threads``: fixed intra-op CPU threads, or None to follow the load
    (``vaereg_harness.launch.threads``). ``checkpoint_every``: a checkpoint is written after an epoch
    once this many seconds have passed since the last, and after a stage's last epoch.
    ``validation_images``: training images held out (a fixed seed-0 choice, ``Dataset.hold_out``)
    whose negative ELBO is logged after each autoencoder epoch as ``validation_elbo``; never the
    test split. None: every training image trains."""

    epochs: Annotated[int, Range(1, 1_000_000)] = 20
    prior_epochs: Annotated[int, Range(1, 1_000_000)] | None = None
    batch_size: Annotated[int, Range(1, 1 << 20)] = 64
    lr: Annotated[float, Range(0, 10, open_low=True)] = 1e-3
    seed: Annotated[int, Range(0, (1 << 63) - 1)] = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Range(1, 1024)] | None = None  # intra-op CPU threads; None: auto (threads.py)
    checkpoint_every: Annotated[float, Range(0, 1e6)] = 30.0  # seconds between checkpoints; 0: every epoch
    deterministic: bool = False
    compile: bool = False  # torch.compile the model's forward
    validation_images: Annotated[int, Range(1, 100_000_000)] | None = None

    def __post_init__(self) -> None:
        check(self, what="training option")


#: Training options that change how a run runs, not what it computes: left out of its run key and
#: of the already-recorded check.
HOW_IT_RUNS = ("threads", "checkpoint_every")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device; use --device cpu or auto")
    return distributed.device(name)


def seed_everything(config: TrainConfig) -> None:
    torch.manual_seed(config.seed)
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


@dataclass
class RunConfig:
    """Everything a run was asked for beyond its combo and data; serialised into the row's
    ``config``. ``objective``: the user's ``objective.*`` options; ``metrics``: metrics added to
    the defaults (``--metrics``); ``metric_options``: metric name -> its options
    (``--set metric.NAME.OPTION=VALUE``)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    objective: dict[str, Any] = field(default_factory=dict)
    iw_samples: Annotated[int, Range(1, 1_000_000)] = 1000
    iw_chunk: Annotated[int, Range(1, 65536)] = 128
    fid_samples: Annotated[int, Range(2, 100_000)] = 1000
    eval_images: Annotated[int, Range(1, 100_000_000)] | None = None  # a fixed subset of the test split
    metrics: tuple[str, ...] = ()
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(self, what="option")
