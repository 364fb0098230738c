"""The model zoo: published VAE variants, each in its own module citing its paper and equation.
Most differ from a plain VAE in what they optimise (an objective); each module names its
objective and preset in ``PRESET`` and, where the variant needs other parts than the conv
Gaussian VAE (a deterministic encoder, an ex-post density, another likelihood), the slots it
changes in ``PARTS``. ``vaereg eval --combo NAME`` trains a variant with its defaults."""

from vaereg import hookimpl
from vaereg_zoo import (
    aae,
    ae,
    btcvae,
    capacity,
    ciwae,
    dipvae,
    factorvae,
    hvae,
    infovae,
    miwae,
    msssim,
    piwae,
    rae,
    vaegan,
    wae,
)

VAEREG_PLUGIN_API = 3

#: The conv Gaussian VAE that a variant's preset trains, except for the slots its PARTS change.
BASE = {"encoder": "gaussian", "decoder": "conv", "prior": "normal", "likelihood": "dlogistic"}

#: (objective name, its class, the module holding its PRESET and PARTS)
VARIANTS = (
    ("aae", aae.AAE, aae),
    ("ae", ae.Autoencoder, ae),
    ("btcvae", btcvae.BetaTCVAE, btcvae),
    ("capacity", capacity.Capacity, capacity),
    ("ciwae", ciwae.CIWAE, ciwae),
    ("dipvae", dipvae.DIPVAE, dipvae),
    ("factorvae", factorvae.FactorVAE, factorvae),
    ("hvae", hvae.HVAE, hvae),
    ("infovae", infovae.InfoVAE, infovae),
    ("miwae", miwae.MIWAE, miwae),
    ("piwae", piwae.PIWAE, piwae),
    ("rae", rae.RAE, rae),
    ("vaegan", vaegan.VAEGAN, vaegan),
    ("wae", wae.WAE, wae),
)

#: Variants that change a part and train with the ELBO: (slot, part name, its class, the module).
PART_VARIANTS = (
    ("likelihood", "msssim", msssim.MSSSIMLikelihood, msssim),
)


@hookimpl
def register_parts(register):
    for _, name, cls, _ in PART_VARIANTS:
        register(name, cls)


@hookimpl
def register_objectives(register):
    for name, cls, _ in VARIANTS:
        register(name, cls)


@hookimpl
def register_presets(register):
    for name, _, module in VARIANTS:
        preset, description, options = module.PRESET
        register(preset, description, options=options, objective=name, **{**BASE, **getattr(module, "PARTS", {})})
    for _, _, _, module in PART_VARIANTS:
        preset, description, options = module.PRESET
        register(preset, description, options=options, **{**BASE, **module.PARTS})
