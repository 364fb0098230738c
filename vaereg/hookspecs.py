"""Hook specifications: what a vaereg plugin may implement.

A plugin is any module listed under ``[project.entry-points.vaereg]``; it marks its hooks with
``vaereg.hookimpl``::

    from vaereg import hookimpl

    @hookimpl
    def register_parts(register):
        register("mylik", MyLikelihood)
"""

import pluggy

hookspec = pluggy.HookspecMarker("vaereg")
hookimpl = pluggy.HookimplMarker("vaereg")


@hookspec
def register_parts(register):
    """Register parts by calling ``register(name, part_class)``.

    ``part_class`` subclasses one of ``Encoder``, ``Decoder``, ``Prior`` or ``Likelihood``; its
    ``slot`` says which. One name may serve several slots (a PixelCNN is a prior and a
    likelihood); within a slot a name belongs to one plugin.
    """


@hookspec
def register_presets(register):
    """Register presets by calling ``register(name, description, **slots)``.

    A preset is a default filling of slots, e.g.
    ``register("vq", "VQ-VAE, uniform prior", encoder="vq", decoder="conv", prior="uniform",
    likelihood="dlogistic")``.
    """
