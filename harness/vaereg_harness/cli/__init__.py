"""The ``vaereg`` command line: the group and its errors (``app``), the options the run commands
share (``options``), ``eval``/``train`` (``run``), ``plugins``/``check-plugin`` (``plugins``),
``results``/``report`` (``store``), ``sample``, and ``sweep``/``status``/``search``
(``cluster``); ``experiment`` reads ``--config`` files."""

from vaereg_harness.cli import cluster, plugins, run, sample, store
from vaereg_harness.cli.app import main

__all__ = ["cluster", "main", "plugins", "run", "sample", "store"]
