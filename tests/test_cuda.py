"""The CUDA path against the CPU's (issue 27): a training step of the main families, bf16
autocast against fp32, the IS NLL, ``torch.compile`` against eager, the EMA codebook update, and
a checkpoint written on CUDA read on a CPU. Skipped without a CUDA device; run on one with
``pytest -m gpu tests/test_cuda.py`` (``benchmarks/gpu_check.sh`` does).

Same draws on both devices: torch's CUDA generator gives other numbers than its CPU generator
for the same seed, so ``cpu_draws`` makes every random tensor the models draw (``torch.randn``,
``randn_like``, ``rand_like``, ``randint``) on the CPU from the seeded CPU generator and moves it
to the device. fp32 comparisons turn TF32 off (cuDNN allows it for convolutions by default)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor

from vaereg.codes import Quantizer
from vaereg.combo import resolve
from vaereg.model import VAE, Batch
from vaereg.objectives import build_objective, importance_nll
from vaereg_harness.api import RunConfig, TrainConfig, create_model, train_model
from vaereg_harness.run import checkpoint
from vaereg_harness.run.trainer import update

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available())")]

CUDA = torch.device("cuda")
FAMILIES = ["gaussian-mlp", "gaussian", "vq", "vq2", "hierarchical", "nvae"]
#: fp32 on both devices: the same arithmetic in another order (cuDNN's and MKL's reductions).
FP32_RTOL = 1e-4
#: bf16 keeps 8 significant bits (2^-9 ~ 2e-3 per rounding); the likelihood stays fp32. Under
#: CPU autocast these models' losses moved by at most 2.2e-4 (nvae) and the gradients' cosine
#: to fp32's stayed above 0.9999.
BF16_RTOL, BF16_MIN_COSINE = 5e-3, 0.999


@pytest.fixture(scope="module", autouse=True)
def _fp32(one_thread):
    """Exact fp32 on the GPU (no TF32), one CPU thread for the CPU side."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _moved(draw: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def drawn(*args, device=None, **kwargs) -> Tensor:
        return draw(*args, **kwargs).to(device)
    return drawn


def _moved_like(draw: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def drawn(like: Tensor, **kwargs) -> Tensor:
        return draw(like.detach().cpu(), **kwargs).to(like.device)
    return drawn


@contextmanager
def cpu_draws(seed: int) -> Iterator[None]:
    """Every draw on the CPU's generator seeded with ``seed``, moved to where it was asked for."""
    patch = pytest.MonkeyPatch()
    for name in ("randn", "randint"):
        patch.setattr(torch, name, _moved(getattr(torch, name)))
    for name in ("randn_like", "rand_like"):
        patch.setattr(torch, name, _moved_like(getattr(torch, name)))
    torch.manual_seed(seed)
    try:
        yield
    finally:
        patch.undo()


def built(text: str, spec) -> VAE:
    torch.manual_seed(0)
    return VAE(resolve(text, spec))


def step_losses(model: VAE, x: Tensor, device: torch.device) -> tuple[float, float]:
    """The objective's loss on ``x`` before and after one update of the trainer's fused Adam."""
    model = model.to(device).train()
    objective = build_objective(model.combo).to(device)
    steps = objective.steps(model, model.stage_parameters(prior=False))
    optimizers = [torch.optim.Adam(s.parameters, lr=1e-3, betas=s.betas, fused=True) for s in steps]
    batch = Batch(x.to(device))
    with cpu_draws(1):
        before = update(steps, optimizers, model(batch, objective.draws), 0.5)["loss"].item()
    with cpu_draws(2):
        after = steps[0].loss(model(batch, objective.draws), 0.5)[0].item()
    return before, after


@pytest.mark.parametrize("text", FAMILIES)
def test_a_training_step_on_cuda_matches_the_cpu(digits, text):
    model = built(text, digits.spec)
    x = digits.to_model(digits.train[:32], train=True)
    cpu = step_losses(copy.deepcopy(model), x, torch.device("cpu"))
    cuda = step_losses(model, x, CUDA)
    assert all(torch.isfinite(torch.tensor(cuda)))
    assert cuda == pytest.approx(cpu, rel=FP32_RTOL), f"{text}: loss before and after a step, cuda {cuda} cpu {cpu}"


@pytest.mark.parametrize("text", FAMILIES)
def test_bf16_autocast_stays_near_fp32(digits, text):
    """The trainer's precision on CUDA (forward under bf16 autocast, loss outside) against fp32:
    the same model, batch and draws."""
    model = built(text, digits.spec).to(CUDA).train()
    objective = build_objective(model.combo).to(CUDA)
    batch = Batch(digits.to_model(digits.train[:64], train=True).to(CUDA))
    results = []
    for bf16 in (False, True):
        twin = copy.deepcopy(model)
        with cpu_draws(1), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = twin(batch, objective.draws)
        loss, _ = objective.loss(out, 0.5)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in twin.parameters() if p.grad is not None])
        results.append((loss.item(), grads))
    (fp32, g32), (bf16, g16) = results
    assert bf16 == pytest.approx(fp32, rel=BF16_RTOL)
    assert torch.isfinite(g16).all()
    assert torch.nn.functional.cosine_similarity(g32, g16, dim=0).item() >= BF16_MIN_COSINE


@pytest.mark.parametrize("text", ["gaussian", "vq", "hierarchical", "nvae"])
def test_the_is_nll_on_cuda_equals_the_cpus(digits, text):
    """-log p(x) per image by importance sampling, K = 256 in chunks of 128, from the same draws."""
    model = built(text, digits.spec).eval()
    x = digits.to_model(digits.test[:16], train=False)
    nlls = []
    for device in (torch.device("cpu"), CUDA):
        model = model.to(device)
        with cpu_draws(3):
            nlls.append(importance_nll(model, Batch(x.to(device)), 256, 128).cpu())
    cpu, cuda = nlls
    assert torch.isfinite(cuda).all()
    assert (cuda - cpu).abs().max().item() <= 1e-3, f"{text}: |cuda - cpu| per image {(cuda - cpu).abs().max():.2e}"


def test_compile_gives_the_eager_loss_and_gradients(digits, monkeypatch):
    """``--compile`` (``torch.compile`` of the model's forward, as the trainer does) against
    eager on CUDA, on the MLP family (the conv families' compilation takes a minute more; the
    GPU check's ``family`` rows train them compiled). Inductor draws with its own generator
    unless ``fallback_random``."""
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "fallback_random", True)
    torch._dynamo.reset()
    model = built("gaussian-mlp", digits.spec).to(CUDA).train()
    objective = build_objective(model.combo).to(CUDA)
    batch = Batch(digits.to_model(digits.train[:64], train=True).to(CUDA))
    results = []
    for net in (model, torch.compile(copy.deepcopy(model))):
        torch.manual_seed(1)
        loss, _ = objective.loss(net(batch, objective.draws), 0.5)
        loss.backward()
        results.append((loss.item(), [p.grad for p in net.parameters()]))
    (eager, eager_grads), (compiled, compiled_grads) = results
    assert compiled == pytest.approx(eager, rel=FP32_RTOL)
    for a, b in zip(eager_grads, compiled_grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)


def test_the_ema_codebook_update_on_cuda_equals_the_cpus():
    """Six EMA steps (van den Oord et al. 2017, appendix A.1) of a 32-code book whose last 8
    codes lie far from every vector: no vector picks them, their counts decay as 0.99^t, and at
    the fourth step (0.99^4 < 0.97) they are restarted onto drawn vectors of the batch."""
    torch.manual_seed(0)
    quantizer = Quantizer(32, 16, ema=True, decay=0.99, epsilon=1e-5, restart_below=0.97)
    for far in (quantizer.codebook, quantizer.sums):
        far[24:] = 100.0
    batches = [torch.randn(64, 16, 4, 4) for _ in range(6)]
    books = []
    for device in (torch.device("cpu"), CUDA):
        q = copy.deepcopy(quantizer).to(device)
        indices = []
        with cpu_draws(4):
            for z_e in batches:
                indices.append(q.quantize(z_e.to(device), update=True)[0].cpu())
        books.append((torch.stack(indices), q.codebook.cpu(), q.counts.cpu(), q.sums.cpu()))
    (cpu_idx, *cpu_state), (cuda_idx, *cuda_state) = books
    assert cpu_state[0][24:].abs().max() < 10, "the far codes were not restarted: the restart path went untested"
    assert torch.equal(cuda_idx, cpu_idx)
    for cuda, cpu in zip(cuda_state, cpu_state, strict=True):
        torch.testing.assert_close(cuda, cpu, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_written_on_cuda_loads_on_a_cpu(digits, tmp_path):
    """A CUDA training run's checkpoint (weights and fused Adam's state) read with
    ``weights_only=True`` onto the CPU: the same weights, and the same log p(x|z) there."""
    config = RunConfig(train=TrainConfig(epochs=1, device="cuda", seed=0))
    model = create_model("gaussian", digits, config=config)
    _, path = train_model(model, digits, config, tmp_path, progress=False)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    tensors = {name: t for name, t in raw["model"].items() if isinstance(t, Tensor)}
    assert tensors and all(t.device.type == "cpu" for t in tensors.values())
    payload = checkpoint.load(path)
    on_cpu = create_model("gaussian", digits, config=RunConfig(train=TrainConfig(epochs=1, device="cpu", seed=1)))
    checkpoint.load_weights(on_cpu, payload["model"], path)
    loaded = on_cpu.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded[name], value.cpu()) if isinstance(value, Tensor) else loaded[name] == value, name
    assert raw["optimizers"][0]["state"], "the optimiser's state was saved"
    x = digits.to_model(digits.test[:16], train=False)
    logs = []
    for net, device in ((model.eval(), CUDA), (on_cpu.eval(), torch.device("cpu"))):
        with cpu_draws(5), torch.no_grad():
            logs.append(net(Batch(x.to(device)), 4).log_px.cpu())
    torch.testing.assert_close(logs[0], logs[1], rtol=FP32_RTOL, atol=1e-3)
