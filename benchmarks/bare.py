"""The reference: a VAE trained, or scored by importance sampling, by the loop anyone would
write by hand, in a fresh process that imports only torch. The networks and the loss are those
of vaereg's ``gaussian-mlp`` and ``gaussian`` presets on 8x8x1 data with 17 intensities (MLP or
conv encoder and decoder, N(0, I) prior with its closed-form KL, a discretized logistic mixture
of 5), written out in plain torch; the harness benchmark checks that the parameter counts agree.

    python benchmarks/bare.py --model mlp --epochs 5 --data digits.pt [--threads N] [--batch 64]
    python benchmarks/bare.py --model mlp --nll 1000 --data test.pt     # IS NLL, K=1000, 128 per pass

``--device cuda`` runs it as the harness runs on a GPU: training under bf16 autocast (the
likelihood in fp32), 8192 rows per IS pass. Prints one JSON line: seconds spent training (or
scoring), images, parameters, threads."""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

LATENT, MIXTURES, LEVELS = 16, 5, 17
OUT = 3 * MIXTURES  # logits, means, log-scales per mixture component, one channel


def mlp_vae() -> tuple[nn.Module, nn.Module]:
    hidden = 512
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                            nn.Linear(hidden, 2 * LATENT))
    decoder = nn.Sequential(nn.Linear(LATENT, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                            nn.Linear(hidden, OUT * 64), nn.Unflatten(1, (OUT, 8, 8)))
    return encoder, decoder


def conv_vae() -> tuple[nn.Module, nn.Module]:
    width = 64
    encoder = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.SiLU(),
                            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU(), nn.Flatten(),
                            nn.Linear(width * 16, 2 * LATENT))
    decoder = nn.Sequential(nn.Linear(LATENT, width * 16), nn.Unflatten(1, (width, 4, 4)), nn.SiLU(),
                            nn.Upsample(size=(8, 8)), nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
                            nn.Conv2d(width, OUT, 3, padding=1))
    return encoder, decoder


def logistic_mixture_log_prob(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """log p(x) per image under a discretized logistic mixture (Salimans et al. 2017)."""
    logits, means, log_scales = params.float().view(-1, 3, MIXTURES, 8, 8).unbind(1)
    log_scales = log_scales.clamp(min=-7.0)
    k = torch.round(x * (LEVELS - 1))  # [N, 1, 8, 8] against the mixtures' [N, 5, 8, 8]
    half = 1.0 / (LEVELS - 1)
    inv_s = torch.exp(-log_scales)
    plus, minus = (2 * half * k - 1 + half - means) * inv_s, (2 * half * k - 1 - half - means) * inv_s
    interior = F.logsigmoid(plus) + F.logsigmoid(-minus) + torch.log(-torch.expm1(minus - plus))
    log_p = torch.where(k == 0, F.logsigmoid(plus), torch.where(k == LEVELS - 1, F.logsigmoid(-minus), interior))
    return torch.logsumexp(log_p + F.log_softmax(logits, dim=1), dim=1).flatten(1).sum(1)


def log_normal(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((z - mean) / log_std.exp()).square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


@torch.no_grad()
def importance_nll(encoder: nn.Module, decoder: nn.Module, x_all: torch.Tensor, k: int, chunk: int) -> float:
    """Mean -log p(x) over the images, log p(x) ~= logsumexp_k log w_k - log K, with
    log w = log p(x|z) + log p(z) - log q(z|x), ``chunk`` draws per image and pass."""
    rows = 8192 if x_all.device.type == "cuda" else 1024  # per pass, as the harness does
    images = max(1, rows // chunk)
    total = 0.0
    for x in x_all.split(images):
        mean, log_std = encoder(x).chunk(2, dim=1)
        log_std = log_std.clamp(-9.0, 5.0)
        parts = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            z = mean + log_std.exp() * torch.randn(n, *mean.shape, device=mean.device)  # [n, B, D]
            xs = x.expand(n, *x.shape).reshape(-1, *x.shape[1:])
            log_px = logistic_mixture_log_prob(xs, decoder(z.flatten(0, 1))).view(n, -1)
            log_w = log_px + log_normal(z, torch.zeros(()), torch.zeros(())) - log_normal(z, mean, log_std)
            parts.append(log_w.double())
        total += -(torch.logsumexp(torch.cat(parts), 0) - math.log(k)).sum().item()
    return total / x_all.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["mlp", "conv"], required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--data", required=True, help="a uint8 tensor [N, 1, 8, 8] of intensities 0..16 (torch.save)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads [torch's default]")
    parser.add_argument("--nll", type=int, default=None, metavar="K", help="score the IS NLL with K samples instead")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder, decoder = (part.to(device) for part in (mlp_vae() if args.model == "mlp" else conv_vae()))
    x_all = torch.load(args.data, weights_only=True).to(device).float() / (LEVELS - 1)
    parameters = [*encoder.parameters(), *decoder.parameters()]
    if args.nll:
        encoder.eval(), decoder.eval()
        began = time.perf_counter()
        nll = importance_nll(encoder, decoder, x_all, args.nll, 128)
        print(json.dumps({"seconds": time.perf_counter() - began, "images": x_all.shape[0], "nll": nll,
                          "parameters": sum(p.numel() for p in parameters), "threads": torch.get_num_threads()}))
        return
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    began = time.perf_counter()
    for _ in range(args.epochs):
        for idx in torch.randperm(x_all.shape[0], device=device).split(args.batch):
            x = x_all[idx]
            with amp:
                mean, log_std = encoder(x).float().chunk(2, dim=1)
                log_std = log_std.clamp(-9.0, 5.0)
                z = mean + log_std.exp() * torch.randn_like(mean)
                kl = (0.5 * (mean.square() + torch.exp(2 * log_std) - 1) - log_std).sum(1)
                loss = (kl - logistic_mixture_log_prob(x, decoder(z))).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()  # the clock stops when the GPU's work is done
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "images": args.epochs * x_all.shape[0],
                      "parameters": sum(p.numel() for p in parameters), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
