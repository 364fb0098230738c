"""log I_v(kappa), the log modified Bessel function of the first kind of real order v >= 0, with its
gradient in kappa, for the von Mises-Fisher normaliser and its KL (Davidson et al. 2018, sec. 3)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import ive
from torch import Tensor


def _ive(v: float, kappa: Tensor) -> np.ndarray:
    """The exponentially scaled ive(v, kappa) = I_v(kappa) exp(-kappa), in float64 on the CPU."""
    return ive(v, kappa.detach().to("cpu", torch.float64).numpy())


class LogBessel(torch.autograd.Function):
    """log I_v(kappa) = log ive(v, kappa) + kappa (no overflow for large kappa), differentiable in
    kappa: d/dkappa log I_v = I_{v+1} / I_v + v / kappa (from I_v' = I_{v+1} + (v / kappa) I_v),
    the ratio taken between scaled values."""

    @staticmethod
    def forward(ctx, v: float, kappa: Tensor) -> Tensor:
        ctx.v = v
        ctx.save_for_backward(kappa)
        value = np.log(_ive(v, kappa)) + kappa.detach().to("cpu", torch.float64).numpy()
        return torch.as_tensor(value).to(kappa)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:
        (kappa,) = ctx.saved_tensors
        return None, grad * (BesselRatio.apply(ctx.v, kappa) + ctx.v / kappa)


def log_bessel(v: float, kappa: Tensor) -> Tensor:
    """log I_v(kappa) elementwise for a float order ``v >= 0`` and ``kappa > 0``."""
    return LogBessel.apply(float(v), kappa)


class BesselRatio(torch.autograd.Function):
    """A_v(kappa) = I_{v+1}(kappa) / I_v(kappa), taken between scaled values (no cancellation of two
    large logs), with dA/dkappa = 1 - A^2 - (2v + 1) A / kappa from the same recurrences."""

    @staticmethod
    def forward(ctx, v: float, kappa: Tensor) -> Tensor:
        ratio = torch.as_tensor(_ive(v + 1, kappa) / _ive(v, kappa)).to(kappa)
        ctx.v = v
        ctx.save_for_backward(kappa, ratio)
        return ratio

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:
        kappa, ratio = ctx.saved_tensors
        return None, grad * (1 - ratio.square() - (2 * ctx.v + 1) * ratio / kappa)


def bessel_ratio(v: float, kappa: Tensor) -> Tensor:
    """I_{v+1}(kappa) / I_v(kappa) elementwise; for the vMF in R^m with v = m/2 - 1 it is the mean
    resultant length A_m(kappa) = E[mu . z]."""
    return BesselRatio.apply(float(v), kappa)
