"""The metric contract: a metric declares the result columns it fills (name, type, unit,
direction) and computes them from a trained model and the test data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vaereg.parts import NoOptions

COLUMN_TYPES = (int, float, str)


@dataclass(frozen=True)
class Column:
    """One result column: ``type`` is int, float or str; ``higher_is_better`` None for a column
    that is not a score (a count, a note)."""

    name: str
    type: type
    unit: str = ""
    higher_is_better: bool | None = None
    description: str = ""


class Metric:
    """A metric plugin, built with an instance of its ``Config``. ``compute`` returns a value
    (or None) for each of its ``columns``."""

    Config: ClassVar[type] = NoOptions
    columns: ClassVar[tuple[Column, ...]] = ()

    def __init__(self, config: object):
        self.config = config

    def compute(self, scoring: Any) -> dict[str, Any]:
        raise NotImplementedError
