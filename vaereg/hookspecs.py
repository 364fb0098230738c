"""Hook specifications: what a vaereg plugin may implement.

A plugin is any module listed under ``[project.entry-points.vaereg]``; it marks its hooks with
``vaereg.hookimpl``::

    from vaereg import hookimpl

    @hookimpl
    def register_parts(register):
        register("mylik", MyLikelihood)

A plugin module may state the plugin API it was written for as ``VAEREG_PLUGIN_API = 2``; a
module that names another version is reported as failed instead of misbehaving.
"""

import pluggy

#: Version of the part contracts and hooks. 2: the context reaches every part, a prior declares
#: its schedule and may use its encoder, KL pairs are registered, options are typed.
PLUGIN_API = 2

hookspec = pluggy.HookspecMarker("vaereg")
hookimpl = pluggy.HookimplMarker("vaereg")


@hookspec
def register_parts(register):
    """Register parts by calling ``register(name, part_class)``.

    :param register: ``register(name: str, part_class: type)``. ``part_class`` subclasses one of
        ``Encoder``, ``Decoder``, ``Prior`` or ``Likelihood``; its ``slot`` says which. One name
        may serve several slots (a PixelCNN is a prior and a likelihood); within a slot a name
        belongs to one plugin.
    """


@hookspec
def register_presets(register):
    """Register presets by calling ``register(name, description, **slots)``.

    :param register: ``register(name: str, description: str, **slots: str)``, each slot naming
        a registered part, e.g. ``register("vq", "VQ-VAE, uniform prior", encoder="vq",
        decoder="conv", prior="uniform", likelihood="dlogistic")``.
    """


@hookspec
def register_kl(register):
    """Register closed-form KL divergences by calling ``register(posterior_type, prior_type, rule)``.

    :param register: ``register(posterior: type[Posterior], prior: type[Prior], rule)``, where
        ``rule(q, p)`` returns KL(q || p) per latent dimension ``[B, *latent.shape]``. Types
        match exactly (no subclasses). Pairs nobody registers use the Monte-Carlo KL.
    """


@hookspec
def register_loggers(register):
    """Register trackers by calling ``register(name, logger_class)``; ``--log NAME`` turns one on.

    :param register: ``register(name: str, logger_class: type)``. The class follows
        ``vaereg_harness.logs.Logger``: built with the run folder and the resolved run config,
        fed one record per epoch (and per iteration of a non-gradient fit), closed at the end.
    """
