"""Discriminators of the zoo's adversarial objectives (FactorVAE, AAE, VAE-GAN): an MLP on latent
vectors and a convolutional network on images, each giving one logit per input (D = sigmoid(logit)),
and the shared refusal of latents that are not continuous vectors."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from vaereg.nets import halvings


class MLPDiscriminator(nn.Sequential):
    """``[N, inputs] -> [N]`` logits: ``layers`` hidden layers of ``units`` with ``activation``."""

    def __init__(self, inputs: int, layers: int, units: int, activation: Callable[[], nn.Module]):
        modules: list[nn.Module] = []
        for width in (inputs, *[units] * (layers - 1)):
            modules += [nn.Linear(width, units), activation()]
        modules.append(nn.Linear(units, 1))
        super().__init__(*modules)

    def forward(self, z: Tensor) -> Tensor:
        return super().forward(z.flatten(1)).squeeze(1)


class ConvDiscriminator(nn.Module):
    """Images ``[N, C, H, W]`` -> ``features`` (the last convolution's activations, flattened) ->
    one logit. Larsen et al. (2016, appendix) on 64x64 faces: 5x5 convolutions of 32, 128, 256 and
    256 channels, the last three of stride 2, then 512 fully connected units. Here one stride-2
    convolution per halving of the image down to at most 4x4 (``vaereg.nets.halvings``), with
    channels ``width * (1, 4, 8, 8, 8, ...)``, and no batch normalisation, so each image's logit
    and features depend on that image alone."""

    def __init__(self, channels: int, height: int, width: int, base: int, units: int):
        super().__init__()
        sizes = halvings(height, width)
        widths = [base * min(8, 4**i) for i in range(len(sizes))]  # 1, 4, 8, 8, ...
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 5, padding=2), nn.ReLU()]
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            layers += [nn.Conv2d(c_in, c_out, 5, stride=2, padding=2), nn.ReLU()]
        self.convolutions = nn.Sequential(*layers, nn.Flatten())
        h, w = sizes[-1]
        self.head = nn.Sequential(nn.Linear(widths[-1] * h * w, units), nn.ReLU(), nn.Linear(units, 1))

    def features(self, x: Tensor) -> Tensor:
        """Dis_l(x) ``[N, F]``: the layer whose activations the reconstruction is measured on."""
        return self.convolutions(x)

    def classify(self, features: Tensor) -> Tensor:
        """Logits ``[N]`` from ``features``."""
        return self.head(features).squeeze(1)
