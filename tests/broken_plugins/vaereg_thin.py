"""A decoder whose output is one pixel wide, [N, C, H, 1]: it broadcasts against the images,
so without the probe batch it would train silently."""

from torch import nn

from vaereg import Decoder, hookimpl

VAEREG_PLUGIN_API = 3


class ThinDecoder(Decoder):
    def __init__(self, data, latent, config, out_channels):
        super().__init__(data, latent, config, out_channels)
        self.shape = (out_channels, data.height, 1)
        self.net = nn.Linear(latent.size, out_channels * data.height)

    def forward(self, z, context):
        return self.net(z.flatten(1)).view(-1, *self.shape)


@hookimpl
def register_parts(register):
    register("thin", ThinDecoder)
