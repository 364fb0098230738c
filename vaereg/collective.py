"""Shared state across the ranks of a torchrun job, for parts whose state changes outside the
gradient: an EMA codebook all-reduces its sums and counts right before its update, a fit by EM
reduces its sufficient statistics, BatchNorm reduces its batch moments. Every function is the
identity in a single process, so a part calls them unconditionally.

The process group itself is the harness's business (``vaereg_harness.launch.distributed``)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as differentiable
from torch import Tensor, nn


def active() -> bool:
    """Whether this process is one of several ranks."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def all_sum(tensor: Tensor) -> Tensor:
    """``tensor`` summed over the ranks, in place; returned for chaining."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def average_gradients(parameters: list[nn.Parameter]) -> None:
    """Each parameter's gradient averaged over the ranks, as DDP would, in one all-reduce."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not active() or not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    for g, chunk in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(chunk.view_as(g))


def broadcast(tensor: Tensor, src: int = 0) -> Tensor:
    """Rank ``src``'s ``tensor`` on every rank, in place."""
    if active():
        dist.broadcast(tensor, src)
    return tensor


def gather_rows(tensor: Tensor) -> Tensor:
    """Every rank's rows ``[n_r, ...]`` concatenated in rank order, on every rank; the ranks
    may hold different numbers of rows."""
    if not active():
        return tensor
    counts = torch.tensor([tensor.shape[0]], device=tensor.device)
    everyone = [torch.zeros_like(counts) for _ in range(world_size())]
    dist.all_gather(everyone, counts)
    sizes = [int(c.item()) for c in everyone]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[:tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def my_share(n: int) -> slice:
    """This rank's contiguous share of ``n`` items (the first ranks take one more when the
    ranks do not divide ``n``); concatenated in rank order the shares give back the items."""
    base, extra = divmod(n, world_size())
    r = rank()
    start = r * base + min(r, extra)
    return slice(start, start + base + (r < extra))


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, over every rank:
    ``torch.nn.SyncBatchNorm`` for devices that kernel refuses (CPU). The moments are summed by
    a differentiable all-reduce, so each rank's gradient also flows through the other ranks'
    use of its statistics, as in one process over the whole batch. In one process, or in eval
    mode, it is plain BatchNorm."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and active()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = (1, -1, *[1] * (x.dim() - 2))
        count = differentiable.all_reduce(x.new_tensor(float(x.numel() // x.shape[1])))
        mean = differentiable.all_reduce(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = differentiable.all_reduce(centred.square().sum(dims)) / count  # two passes: no E[x^2] - E[x]^2
        if self.track_running_stats:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 1 / (int(self.num_batches_tracked) + 1)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * count / (count - 1).clamp_min(1), momentum)
                self.num_batches_tracked.add_(1)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm synchronised over the ranks: ``torch.nn.SyncBatchNorm``
    on CUDA, ``GlobalBatchNorm`` elsewhere. The state dict keeps its keys."""
    if any(p.device.type == "cuda" for p in module.parameters()):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            like = next(iter([*child.parameters(), *child.buffers()]))
            synced = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats, device=like.device, dtype=like.dtype)
            synced.load_state_dict(child.state_dict())
            synced.train(child.training)
            setattr(module, name, synced)
        else:
            sync_batchnorm(child)
    return module
