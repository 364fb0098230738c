"""Hook specifications: what a vaereg plugin may implement, one hook per kind of plugin.

A plugin is any module listed under ``[project.entry-points.vaereg]``. It states the plugin API
it was written for and marks its hooks with ``vaereg.hookimpl``::

    from vaereg import hookimpl

    VAEREG_PLUGIN_API = 3

    @hookimpl
    def register_parts(register):
        register("mylik", MyLikelihood)

Every registered class is checked before it is used (``vaereg.checks``): its base class, the
methods it must implement, a ``Config()`` whose defaults pass their own types and ranges, and a
name nobody else took. A plugin that fails a check is skipped with a one-line reason; the others
keep working. Loggers are a harness concept: their hook is ``vaereg_harness.hookspecs``.
"""

import pluggy

#: Version of the contracts and hooks. 3: objectives, datasets and metrics are plugin kinds;
#: compatibility is ``latent_kinds``/``mismatch`` and a prior's training is its ``schedule``;
#: the model's output carries the posterior and the batch; loggers moved to the harness.
PLUGIN_API = 3
#: APIs this vaereg loads. An API-2 plugin loads with a deprecation note unless it uses a name
#: API 3 renamed (``vaereg.checks.RENAMED_IN_3``), which is refused naming the change.
SUPPORTED_APIS = (2, 3)

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
    """Register presets by calling ``register(name, description, options=None, **slots)``.

    :param register: ``register(name: str, description: str, options: dict | None = None,
        **slots: str)``. Each slot (``encoder``, ``decoder``, ``prior``, ``likelihood``, and
        ``objective``) names a registered entry of that kind; ``options`` maps a group (a slot,
        or ``objective``) to option values the preset sets, which ``--set`` overrides (its
        objective options apply while its objective is the one trained), e.g.
        ``register("btcvae", "beta-TC-VAE", options={"objective": {"beta": 6}},
        encoder="gaussian", decoder="conv", prior="normal", likelihood="dlogistic",
        objective="btcvae")``.
    """


@hookspec
def register_kl(register):
    """Register closed-form KL divergences by calling ``register(posterior_type, prior_type, rule)``.

    :param register: ``register(posterior: type[Posterior], prior: type[Prior], rule)``, where
        ``rule(q, p)`` returns KL(q || p) per latent dimension ``[B, *latent.shape]``. Types
        match exactly (no subclasses). Pairs nobody registers use the Monte-Carlo KL.
    """


@hookspec
def register_objectives(register):
    """Register training objectives by calling ``register(name, objective_class)``.

    :param register: ``register(name: str, objective_class: type[vaereg.Objective])``. The class
        turns the model's ``Terms`` into a loss and detached stats (``loss``), may own modules
        with their own optimizers (``steps``), and declares its ``Config`` and the
        ``latent_kinds`` it supports. ``--combo C+objective=NAME`` selects it; ``elbo`` is
        the default.
    """


@hookspec
def register_datasets(register):
    """Register data sets by calling ``register(name, source_class)``.

    :param register: ``register(name: str, source_class: type[vaereg.DataSource])``. The class
        loads a ``vaereg.Dataset`` (uint8 images, optional labels and ground-truth factors,
        train and test splits) from a root folder, or generates it. ``--dataset NAME`` (or
        ``NAME:ARGUMENT``, as in ``folder:PATH``) selects it.
    """


@hookspec
def register_metrics(register):
    """Register metrics by calling ``register(name, metric_class)``.

    :param register: ``register(name: str, metric_class: type[vaereg.Metric])``. The class
        declares its result ``columns`` (name, type, unit, direction) and computes them from
        the trained model and the test data. ``--metrics NAME,...`` adds it to the defaults.
    """
