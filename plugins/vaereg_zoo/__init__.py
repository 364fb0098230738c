"""The model zoo's objectives: published VAE variants that differ from a plain VAE in what they
optimise, each in its own module citing its paper and equation, each registered with a preset of
the same name that trains the conv Gaussian VAE with it (``vaereg eval --combo btcvae``)."""

from vaereg import hookimpl
from vaereg_zoo import btcvae, capacity, dipvae, infovae, wae

VAEREG_PLUGIN_API = 3

#: (objective name, its class, the module whose PRESET names its preset)
VARIANTS = (
    ("btcvae", btcvae.BetaTCVAE, btcvae),
    ("capacity", capacity.Capacity, capacity),
    ("dipvae", dipvae.DIPVAE, dipvae),
    ("infovae", infovae.InfoVAE, infovae),
    ("wae", wae.WAE, wae),
)


@hookimpl
def register_objectives(register):
    for name, cls, _ in VARIANTS:
        register(name, cls)


@hookimpl
def register_presets(register):
    for name, _, module in VARIANTS:
        preset, description, options = module.PRESET
        register(preset, description, options=options, encoder="gaussian", decoder="conv", prior="normal",
                 likelihood="dlogistic", objective=name)
