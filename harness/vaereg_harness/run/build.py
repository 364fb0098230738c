"""A run's model: built from its resolved combo, seeded, on its device, and probed on two images
(``vaereg.probe``) before anything trains."""

from __future__ import annotations

from vaereg.model import VAE
from vaereg.probe import probe
from vaereg_harness.launch import threads
from vaereg_harness.run.config import pick_device, seed_everything
from vaereg_harness.run.plan import Run


def build(run: Run, *, probed: bool = False) -> VAE:
    """The model of ``run``, seeded, on the configured device. It is probed unless the caller
    has probed its combo already (``probed``); a probe leaves the random stream as it was."""
    threads.configure(run.config.train.threads)
    seed_everything(run.config.train)
    model = VAE(run.combo).to(pick_device(run.config.train.device))
    if not probed:
        probe(model, run.data)
    return model
