"""Memory estimates checked before large allocations: a run that cannot fit is refused before it
starts, naming the option to lower. The estimates are rough upper bounds (float32 tensors and
the temporaries a pass creates); they exist to catch settings that could never fit."""

from __future__ import annotations

from pathlib import Path

import torch

from vaereg import UsageError
from vaereg.model import VAE
from vaereg_harness.metrics.passes import images_per_pass

# float32 values a decoder pass keeps per pixel, per unit of the likelihood's parameter
# channels and per hidden channel at full resolution (activations and their temporaries)
TEMPORARIES, HIDDEN = 3, 4 * 64


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device``: CUDA's free memory, or the kernel's MemAvailable; None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def require(need: int, device: torch.device, what: str, lower: str) -> None:
    have = available_bytes(device)
    if have is not None and need > have:
        raise UsageError(f"{what} needs about {need / 2**30:.1f} GiB of memory and {have / 2**30:.1f} GiB is free on "
                         f"{device.type}; lower {lower}")


def check_run(model: VAE, iw_chunk: int, fid_samples: int | None) -> None:
    """Refuse an evaluation whose importance-sampling pass or FID samples cannot fit."""
    data = model.combo.data
    device = next(model.parameters()).device
    pixels = data.height * data.width
    per_row = 4 * pixels * (TEMPORARIES * model.likelihood.param_channels() + HIDDEN)
    rows = images_per_pass(device, iw_chunk) * iw_chunk
    require(rows * per_row, device, f"an importance-sampling pass of {rows} rows", "--iw-chunk")
    if fid_samples:
        require(3 * fid_samples * data.channels * pixels * 4, torch.device("cpu"), f"{fid_samples} FID samples",
                "--fid-samples")
