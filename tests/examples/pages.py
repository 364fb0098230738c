"""Every code example of README.md and docs/**/*.md as a test, through Sybil's Markdown parsers.

Each page gets a fresh folder (the ``example_page`` fixture, one per page) that its examples share
in order, so a block may use what an earlier one wrote.

- ``python``: run in one namespace per page, with the page's folder as working directory and one
  torch thread. Blocks whose first line is ``# plugin: MODULE`` are left to tests/test_docs.py,
  which installs each as a package and runs the conformance kit on it.
- ``bash``, ``sh``, ``shell``: tests/examples/shell.py.
- ``toml``: parsed; written to the page's folder under the name a ``<!-- file: NAME -->``
  directive above it gives, for a later block (often an invisible one) to run. A shell block
  writes every such file above it first, so it runs alone too (``-m slow`` selects it alone).
- skips and slow examples: tests/examples/directives.py.
"""

import functools
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path

from sybil import Document, Example, Region, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser
from sybil.typing import Evaluator

from tests.examples.directives import ROOT, directives_before, is_page
from tests.examples.shell import Shell

SHELLS = ("bash", "sh", "shell")
FIXTURE = "example_page"


class Page:
    """One page's folder and its shell, shared by its examples in order."""

    def __init__(self, folder: Path, budget: str, cache: Path) -> None:
        self.folder = folder
        self.shell = Shell.of(folder, budget, cache)


def page(example: Example) -> Page:
    return example.namespace[FIXTURE]


class PythonBlocks(PythonCodeBlockParser):
    """Python blocks (and doctests), run in the page's folder; the guide's ``# plugin:`` modules left out."""

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in super().__call__(document):
            if not str(region.parsed).startswith("# plugin: "):
                region.evaluator = functools.partial(in_page_folder, region.evaluator)
                yield region


def in_page_folder(evaluator: Evaluator, example: Example) -> str | None:
    before = Path.cwd()
    os.chdir(page(example).folder)
    try:
        return evaluator(example)
    finally:
        os.chdir(before)


class ShellBlocks:
    """Shell blocks of every name in SHELLS."""

    def __init__(self) -> None:
        self.parsers = [CodeBlockParser(language, self.evaluate) for language in SHELLS]

    def __call__(self, document: Document) -> Iterable[Region]:
        for parser in self.parsers:
            yield from parser(document)

    @staticmethod
    def evaluate(example: Example) -> str | None:
        for earlier in example.document.examples():  # the experiment files above it, whether or not selected
            if earlier.start < example.start and earlier.region.evaluator is evaluate_toml:
                write_file(earlier)
        return page(example).shell.run(str(example.parsed))


def write_file(example: Example) -> str | None:
    """Write a toml block where its ``<!-- file: NAME -->`` directive says, if it has one."""
    name = directives_before(example.document.text, example.start).get("file")
    if name:
        folder = page(example).folder.resolve()
        if folder not in (folder / name).resolve().parents:
            return f"<!-- file: {name} --> names a file outside the page's folder"
        (folder / name).write_text(str(example.parsed), encoding="utf-8")
    return None


def evaluate_toml(example: Example) -> str | None:
    """Parse the block, then write its file."""
    try:
        tomllib.loads(str(example.parsed))
    except tomllib.TOMLDecodeError as error:
        return f"not valid TOML: {error}"
    return write_file(example)


class Pages(Sybil):
    """Sybil over README.md and docs/**/*.md exactly (no other Markdown file of the tree)."""

    def should_parse(self, path: Path) -> bool:
        return is_page(Path(path).absolute())


EXAMPLES = Pages(parsers=[PythonBlocks(), ShellBlocks(), CodeBlockParser("toml", evaluate_toml), SkipParser()],
                 path=str(ROOT), fixtures=[FIXTURE])
