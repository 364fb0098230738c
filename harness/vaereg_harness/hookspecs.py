"""The harness's own hook: trackers. Core knows nothing of them; a plugin module implements
``register_loggers`` beside its other hooks, and the harness reads it from the plugins the core
registry loaded (``vaereg_harness.logs.logger_class``)."""

import pluggy

hookspec = pluggy.HookspecMarker("vaereg")


@hookspec
def register_loggers(register):
    """Register trackers by calling ``register(name, logger_class)``; ``--log NAME`` turns one on.

    :param register: ``register(name: str, logger_class: type[vaereg_harness.logs.Logger])``. The
        class is built with the run folder and the resolved run description (a JSON-ready dict),
        fed one record per epoch (and per iteration of a non-gradient fit) with
        ``log(record, samples)``, and closed at the end (``close()``). A record holds ``stage``,
        ``step``, ``epoch`` (or ``iteration`` for a non-gradient fit) and the epoch's mean of
        every loss term, ``lr`` and ``images_per_s``.
    """
