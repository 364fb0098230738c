"""An MS-SSIM reconstruction term in the likelihood slot (Snell et al. 2017, "Learning to generate
images with perceptual similarity metrics"): the decoder's mean image is scored against the input
by multi-scale structural similarity (Wang, Simoncelli & Bovik 2003, "Multi-scale structural
similarity for image quality assessment") instead of by a per-pixel density:

    log p(x | params) := -scale * (1 - MS-SSIM(x, sigmoid(params)))

SSIM (Wang et al. 2003, eqs. 1-3 with C3 = C2 / 2) compares local statistics under a Gaussian
window (sigma 1.5), with C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03 and L = 1 for images
in [0, 1]:

    l  = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)            luminance
    cs = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2)       contrast-structure

MS-SSIM (eq. 7) multiplies the mean contrast-structure at scales 1..M-1 with the mean SSIM map
(luminance times contrast-structure) at the coarsest scale M, each raised to its exponent; the
image is 2x average-pooled between scales, and every window is a valid convolution. The paper's
exponents (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) are for M = 5 and an 11x11 window, which need
images of at least 11 * 2^4 = 176 px under valid convolution; smaller images use the first M
exponents renormalised to sum to 1, and a smaller window (``choose``). With M = 1 MS-SSIM is SSIM.

A score that is negative (anti-correlated structure, mostly at coarse scales) has no fractional
power; every factor is clamped to ``EPS`` before its power (not relu, whose zero would give an
infinite gradient under a power below 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from vaereg import Context, DataSpec, LatentSpec, Likelihood, Range
from vaereg.parts import intensity_index

#: The paper's per-scale exponents, finest scale first (Wang et al. 2003, section 3.1).
EXPONENTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SIGMA, K1, K2 = 1.5, 0.01, 0.03
MAX_WINDOW = 11
EPS = 1e-6


def gaussian_window(size: int, sigma: float = SIGMA, dtype: torch.dtype = torch.float32) -> Tensor:
    """The normalised 1-D Gaussian taps ``[size]`` centred on the middle tap."""
    offsets = torch.arange(size, dtype=dtype) - (size - 1) / 2
    taps = torch.exp(-offsets**2 / (2 * sigma**2))
    return taps / taps.sum()


def _filter(x: Tensor, taps: Tensor) -> Tensor:
    """Valid, per-channel 2-D convolution of ``x`` ``[N, C, H, W]`` with the separable window."""
    c, w = x.shape[1], taps.numel()
    x = F.conv2d(x, taps.view(1, 1, w, 1).expand(c, 1, w, 1), groups=c)
    return F.conv2d(x, taps.view(1, 1, 1, w).expand(c, 1, 1, w), groups=c)


def ssim_maps(x: Tensor, y: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """Luminance and contrast-structure maps ``[N, C, H - window + 1, W - window + 1]`` of images in
    [0, 1], from the window-weighted means, variances and covariance (population moments)."""
    taps = gaussian_window(window, dtype=x.dtype).to(x.device)
    mu_x, mu_y = _filter(x, taps), _filter(y, taps)
    var_x = _filter(x * x, taps) - mu_x**2
    var_y = _filter(y * y, taps) - mu_y**2
    cov = _filter(x * y, taps) - mu_x * mu_y
    c1, c2 = K1**2, K2**2
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    return luminance, contrast_structure


def ssim(x: Tensor, y: Tensor, window: int = MAX_WINDOW) -> Tensor:
    """Mean SSIM per image ``[N]`` over channels and valid window positions."""
    luminance, contrast_structure = ssim_maps(x, y, window)
    return (luminance * contrast_structure).flatten(1).mean(1)


def ms_ssim(x: Tensor, y: Tensor, scales: int, window: int) -> Tensor:
    """MS-SSIM per image ``[N]`` over ``scales`` scales (Wang et al. 2003, eq. 7), the exponents
    renormalised to the scales used and every factor clamped to ``EPS`` before its power."""
    weights = torch.tensor(EXPONENTS[:scales], dtype=x.dtype, device=x.device)
    weights = weights / weights.sum()
    score = x.new_ones(x.shape[0])
    for j in range(scales):
        luminance, contrast_structure = ssim_maps(x, y, window)
        factor = contrast_structure if j < scales - 1 else luminance * contrast_structure
        score = score * factor.flatten(1).mean(1).clamp(min=EPS) ** weights[j]
        if j < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return score


def _largest_odd(size: int) -> int:
    return size if size % 2 else size - 1


def choose(height: int, width: int, scales: int = 0, window: int = 0) -> tuple[int, int]:
    """The (scales, window) used on ``height x width`` images; 0 means automatic. Automatic:
    the window is the largest odd size up to 11 that fits the coarsest image (the whole image
    when the scales are automatic too), then the scales are the most, up to 5, whose coarsest
    image (side // 2^(M-1)) still holds the window. With an option given the result may not fit
    (``mismatch`` refuses it)."""
    side = min(height, width)
    if window == 0:
        window = max(1, min(MAX_WINDOW, _largest_odd(side >> max(scales - 1, 0))))
    if scales == 0:
        scales = max([m for m in range(1, len(EXPONENTS) + 1) if side >> (m - 1) >= window], default=1)
    return scales, window


@dataclass
class MSSSIMConfig:
    """``scales`` (M) and ``window`` (odd side of the Gaussian window): 0 chooses them from the
    image size (``choose``). ``scale``: the weight of ``1 - MS-SSIM`` in log p(x | z); None
    means the data's pixel count (``data.dims``), which puts the per-image score on the scale of
    a sum of per-pixel log-likelihoods, so it weighs against the KL as a pixel likelihood would
    (unscaled, a score in [0, 1] would be outweighed by a few nats of KL)."""

    scales: Annotated[int, Range(0, len(EXPONENTS))] = 0
    window: Annotated[int, Range(0, MAX_WINDOW)] = 0
    scale: Annotated[float, Range(0, 1e9, open_low=True)] | None = None

    def __post_init__(self) -> None:
        if self.window and self.window % 2 == 0:
            raise ValueError(f"window={self.window} is even; the Gaussian window needs an odd size such as "
                             f"{self.window - 1} or {self.window + 1}, or 0 for automatic")


class MSSSIMLikelihood(Likelihood):
    """1 - MS-SSIM of the mean image ``sigmoid(params)`` (one channel per data channel), scaled,
    as the reconstruction term; ``sample`` is the mean image rounded to the data's intensities."""

    Config = MSSSIMConfig

    def __init__(self, data: DataSpec, latent: LatentSpec, config: MSSSIMConfig):
        super().__init__(data, latent, config)
        self.channels, self.intensities = data.channels, data.intensities
        self.scales, self.window = choose(data.height, data.width, config.scales, config.window)
        self.scale = float(data.dims) if config.scale is None else config.scale

    @classmethod
    def mismatch(cls, data: DataSpec, latent: LatentSpec, config: MSSSIMConfig) -> str | None:
        scales, window = choose(data.height, data.width, config.scales, config.window)
        side = min(data.height, data.width) >> (scales - 1)
        if window > side:
            return (f"needs its window to fit the coarsest image, and its {window}x{window} window is larger than "
                    f"the {side}px coarsest image of {scales} scale(s) "
                    f"of {data.describe()}; use a smaller likelihood.window or fewer likelihood.scales "
                    f"(0 chooses automatically)")
        return super().mismatch(data, latent, config)

    @classmethod
    def not_a_density(cls, data: DataSpec, config: MSSSIMConfig) -> str:
        scales, window = choose(data.height, data.width, config.scales, config.window)
        how = "chosen" if config.scales == 0 and config.window == 0 else "set"
        plural = "" if scales == 1 else "s"
        return (f"MS-SSIM with {scales} scale{plural} and window {window}x{window} ({how} for "
                f"{data.height}x{data.width} images) is a reconstruction score, not a normalised density "
                f"over pixel intensities")

    def param_channels(self) -> int:
        return self.channels

    def log_prob(self, x: Tensor, params: Tensor, context: Context) -> Tensor:
        return -self.scale * (1 - ms_ssim(x.float(), self.mean(params, context), self.scales, self.window))

    def sample(self, params: Tensor, context: Context) -> Tensor:
        return intensity_index(self.mean(params, context), self.intensities) / (self.intensities - 1)

    def mean(self, params: Tensor, context: Context) -> Tensor:
        return torch.sigmoid(params.float())


PRESET = ("msssim", "VAE with an MS-SSIM reconstruction term in place of a pixel likelihood (Snell et al. 2017); "
          "reports no NLL", {})
PARTS = {"likelihood": "msssim"}
