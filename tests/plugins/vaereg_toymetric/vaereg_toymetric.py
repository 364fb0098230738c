"""Two third-party metrics for vaereg (a test fixture): the reconstruction error of the
posterior's mode, which runs its own pass over the scored test images, and the number of
ground-truth factors, which cannot score a data set without them."""

import math
from dataclasses import dataclass
from typing import Annotated

import torch

from vaereg import Column, Metric, Range, hookimpl

VAEREG_PLUGIN_API = 3


@dataclass
class ReconstructionConfig:
    batch: Annotated[int, Range(1, 4096)] = 100  # test images per pass


class ReconstructionError(Metric):
    """Mean squared error between each scored test image (in [0, 1]) and the likelihood's mean
    image decoded from its posterior's mode, and the PSNR that makes."""

    Config = ReconstructionConfig
    columns = (
        Column("recon_mse", float, "", False, "mean squared error of the mode's reconstruction mean",
               heading="recon MSE", format=".5f"),
        Column("recon_psnr", float, "dB", True, "10 log10(1 / recon_mse)", heading="PSNR", format=".2f"),
    )

    @torch.no_grad()
    def compute(self, scoring):
        test, step = scoring.test, self.config.batch
        squares, count = 0.0, 0
        for i in range(0, test.test.shape[0], step):
            labels = None if test.test_labels is None else test.test_labels[i:i + step].to(scoring.device)
            batch = test.batch(test.test[i:i + step].to(scoring.device), labels, train=False)
            posterior = scoring.model.encode(batch)
            params = scoring.model.decoder(posterior.decoder_input(posterior.mode()[None]), batch.context)
            mean = scoring.model.likelihood.mean(params, batch.context)
            squares += (mean - batch.x).double().square().sum().item()
            count += batch.x.numel()
        mse = squares / count
        return {"recon_mse": mse, "recon_psnr": 10 * math.log10(1 / mse)}


class FactorCount(Metric):
    """How many ground-truth factors of variation the data set has."""

    columns = (Column("factor_count", int, "factors", None, "ground-truth factors of the data set"),)

    def mismatch(self, data, combo):
        if getattr(data, "factors", None) is None:
            return f"needs ground-truth factors (Dataset.factors), and {data.spec.name} has none"
        return None

    def compute(self, scoring):
        return {"factor_count": len(scoring.data.factors.names)}


@hookimpl
def register_metrics(register):
    register("recon", ReconstructionError)
    register("factor-count", FactorCount)
