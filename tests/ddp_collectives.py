"""Run by torchrun from ``tests/test_distributed.py``: ``python -m tests.ddp_collectives OUT [vq-steps]``.

Default: GlobalBatchNorm, EM and ``gather_rows`` on 2 ranks, each against one process over
everything (computed on every rank with the collectives switched off). ``vq-steps``: trains
``vq`` with restarts on and compares the ranks' codebooks after every EMA update. Each rank
writes ``OUT/rank<r>.json``; a mismatch raises, so the job exits non-zero."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from vaereg import collective
from vaereg.codes import Quantizer
from vaereg_harness.launch import distributed


@contextmanager
def one_process():
    """The collectives as in a single process, for the reference."""
    active = collective.active
    collective.active = lambda: False
    try:
        yield
    finally:
        collective.active = active


def check_batchnorm() -> str:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, 4, 4, generator=g, dtype=torch.float64) * 3 + 1
    w = torch.randn(10, 3, 4, 4, generator=g, dtype=torch.float64)
    reference = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5, generator=g)
        reference.bias.uniform_(-1, 1, generator=g)
    synced = collective.sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3).double()))[0]
    synced.load_state_dict(reference.state_dict())
    assert isinstance(synced, collective.GlobalBatchNorm)

    full = x.clone().requires_grad_()
    (reference(full) * w).sum().backward()
    share = collective.my_share(x.shape[0])  # 5 images on each rank
    mine = x[share].clone().requires_grad_()
    y = synced(mine)
    (y * w[share]).sum().backward()

    with torch.no_grad():
        want = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(x.var((0, 2, 3), unbiased=False,
                                                                        keepdim=True) + reference.eps)
        want = want * reference.weight.view(1, -1, 1, 1) + reference.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(y.detach(), want[share], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(mine.grad, full.grad[share], rtol=1e-9, atol=1e-10)
    for name in ("weight", "bias"):
        total = collective.all_sum(getattr(synced, name).grad.clone())
        torch.testing.assert_close(total, getattr(reference, name).grad, rtol=1e-9, atol=1e-10)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(synced, name), getattr(reference, name), rtol=1e-12, atol=1e-12)
    synced.eval()
    reference.eval()
    torch.testing.assert_close(synced(x), reference(x), rtol=1e-12, atol=1e-12)
    return "ok"


def check_em() -> str:
    from vaereg_mixtures.em import fit_mixture

    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    z = centres[torch.randint(3, (301,), generator=g)] + torch.randn(301, 2, generator=g, dtype=torch.float64)
    for covariance in ("full", "diag"):
        with one_process():
            want, want_history = fit_mixture(z, 3, covariance, iterations=30, restarts=2)
        got, history = fit_mixture(z[collective.my_share(z.shape[0])], 3, covariance, iterations=30, restarts=2)
        for name in ("weights", "means", "covariances"):
            torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-9, atol=1e-12)
        assert len(history) == len(want_history)
        torch.testing.assert_close(torch.tensor(history), torch.tensor(want_history), rtol=1e-12, atol=1e-12)
    return "ok"


def check_gather() -> str:
    rank = collective.rank()
    rows = torch.full((rank + 1, 2), float(rank))
    assert collective.gather_rows(rows).tolist() == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
    return "ok"


def vq_steps(out: Path) -> dict:
    """Train vq with codes restarted often; after every update compare every rank's codebook."""
    from vaereg_harness.api import RunConfig, create_model, load_data, train_model
    from vaereg_harness.run.config import TrainConfig

    seen = {"updates": 0, "restarts": 0, "max_difference": 0.0}
    update, restart = Quantizer.update, Quantizer.restart

    def checked_update(self, flat, indices):
        update(self, flat, indices)
        books = [torch.zeros_like(self.codebook) for _ in range(collective.world_size())]
        dist.all_gather(books, self.codebook.contiguous())
        seen["updates"] += 1
        seen["max_difference"] = max(seen["max_difference"], max((b - books[0]).abs().max().item() for b in books))

    def counted_restart(self, flat):
        seen["restarts"] += int((self.counts < self.restart_below).any())
        restart(self, flat)

    Quantizer.update, Quantizer.restart = checked_update, counted_restart
    data = load_data("digits")
    config = RunConfig(train=TrainConfig(epochs=1, batch_size=64))
    model = create_model("vq", data, {"encoder": {"restart_below": 0.5, "decay": 0.8, "codes": 64}}, config)
    train_model(model, data, config, out / "runs", progress=False)
    return seen


def main() -> None:
    out = Path(sys.argv[1])
    world = distributed.start()
    try:
        if sys.argv[2:] == ["vq-steps"]:
            report = vq_steps(out)
        else:
            report = {"batchnorm": check_batchnorm(), "em": check_em(), "gather": check_gather()}
        (out / f"rank{world.rank}.json").write_text(json.dumps(report))
    finally:
        distributed.stop()


if __name__ == "__main__":
    main()
