"""The fuzz run behind ``tests/test_fuzz.py``, in a process of its own (runs change process-wide
torch settings). Every case is derived, not listed by hand:

- the command line's own option table: every option (and argument) of every command, given
  values malformed for its click type (huge integers, nan, unicode and control characters);
- the registered ``Config`` dataclasses: every field of every part, objective and data set,
  each in a combo that takes it, given values wrong for its ``FieldType`` (integers of 300+
  digits, out of range, even for shape options, nan/inf/1e400, unknown choices, "maybe");
- experiment files: every key ``vaereg eval --config`` reads (and its ``[set.GROUP]`` tables),
  one spoiled per file with TOML type confusions (inf, 1e400, a path as a number, ``[[1]]``,
  a list for a scalar, "false" for a boolean, ``[1.5, 2]``, unicode keys);
- then random cases of two or three spoiled options.

A case fails on a traceback, a hang (``HANG_S``), an exit code other than 0 and 2 (but for a
valid run whose loss diverged: exit 1), a refusal that is not exactly one ``Error:`` line, or a
refusal that wrote anything. Prints one JSON
object: the case count, the exit-code histogram, the wall time and every failing case.

    python -m tests.fuzz_cli --workdir DIR --checkpoint CKPT [--cases 2000] [--sample N] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import time
import typing
from collections import Counter
from pathlib import Path
from typing import Any

import click
import numpy as np
from click.testing import CliRunner
from PIL import Image

from vaereg.combo import resolve
from vaereg.config import FieldType, field_types
from vaereg.registry import get_registry
from vaereg_harness.cli import main
from vaereg_harness.cli.experiment import NOT_IN_FILES, option_names
from vaereg_harness.data import load_data

HANG_S = 20
HUGE = 10**310  # past every float and every 64-bit integer
NAMES = ["é", "☃名前", "\u202egnp.x", "a\x00b", "\x07", "tab\there", "new\nline", "\udcff", "\ufeff", " "]
INTS = ["-1", "0", "1e3", "nan", "", "abc", "9223372036854775808", str(HUGE), f"-{HUGE}", "1000000000", "-0", "2.5",
        "٣"]
FLOATS = ["nan", "inf", "-inf", "-1", "1e300", "1e400", "0", "abc", "", "1e-320", "-0.0", str(HUGE)]
TEXTS = ["", "+", "=", "a" * 300, "gaussian+", "+gaussian", "nope", "gaussian+gaussian", "encoder=", "x" * 5000,
         "folder:/nonexistent", "folder:/etc", "folder:", "vq+pixelcnn+pixelcnn", "gaussian+likelihood=nope",
         "prior=", "../..", " ", "gaussian-mlp+encoder=iaf+prior=vamp+likelihood=pixelcnn", *NAMES]
SETS = ["encoder.=1", "x.y=z", "objective", "=", "encoder.latent_dim", "é.x=1", "encoder.é=1", "encoder.\x00=1",
        "metric.x=1", "dataset.nope=1", f"encoder.latent_dim={HUGE}", "encoder.latent_dim=[[1]]",
        'encoder.width={"a":1}']
PATHS = ["/etc/passwd", "/nonexistent/deeper/x", "", "a" * 300, "/dev/null", "/proc", ".", *NAMES]
FOLDER = "imgs-é☃"  # an image folder (dataset folder:PATH) whose name is not ASCII
SIZES = ("width", "hidden", "features", "units", "channels")  # options a valid-by-accident run keeps tiny
NEVER = {"download", "compile_"}  # flags a case never sets: the network, a compiler
DIVERGED = "loss became"  # the one line of a valid run whose loss went non-finite (exit 1)
COMBOS = ["gaussian", "gaussian-mlp", "vq+pixelcnn", "nvae", "hierarchical", "vq2", "gaussian+likelihood=pixelcnn"]


def malformed(param: click.Parameter) -> list[str]:
    """Bad values for ``param``, chosen by its click type."""
    if param.name == "assignments":
        return SETS
    kind = param.type
    if isinstance(kind, click.Choice):
        return ["nope", "", kind.choices[0].upper() + "x", *NAMES[:4]]
    if isinstance(kind, click.Path):
        return PATHS
    if isinstance(kind, click.types.IntParamType | click.IntRange):
        return INTS
    if isinstance(kind, click.types.FloatParamType | click.FloatRange):
        return FLOATS
    return TEXTS + INTS[:4]


def flag(param: click.Option) -> str:
    return next(opt for opt in param.opts if opt.startswith("--") or opt.startswith("-"))


FAST = ["--epochs", "1", "--quiet", "--checkpoint-every", "0", "--threads", "1"]
EVAL = ["--iw-samples", "2", "--no-fid", "--eval-images", "16"]


def base(command: str, checkpoint: str) -> list[str]:
    """A quick valid invocation that each case spoils."""
    fast = ["--combo", "gaussian-mlp", *FAST, "--set", "encoder.width=4", "--set", "decoder.width=4"]
    return {"eval": ["eval", *fast, *EVAL], "train": ["train", *fast],
            "sample": ["sample", checkpoint, "-n", "4", "-o", "fuzz.png"], "plugins": ["plugins"],
            "results": ["results"], "report": ["report"], "check-plugin": ["check-plugin", "loggers"],
            "sweep": ["sweep", "--config", SWEEP, "--dry-run"], "status": ["status", "--config", SWEEP],
            "search": ["search", "--config", SEARCH, "--dry-run"]}[command]


SWEEP, SEARCH = "sweep.toml", "search.toml"  # valid files the sweep and search cases spoil options of
SWEEP_TEXT = ('combo = "gaussian-mlp"\nepochs = 1\nfid = false\niw_samples = 2\neval_images = 16\nlr = [1e-3, 2e-3]\n'
              '[set.encoder]\nwidth = 4\n[set.decoder]\nwidth = 4\n')
SEARCH_TEXT = SWEEP_TEXT.replace("lr = [1e-3, 2e-3]\n", "") + (
    '[search]\ntrials = 1\npruner = "none"\n[search.space]\nlr = { low = 1e-4, high = 1e-2 }\n')


def option_cases(checkpoint: str) -> tuple[list[list[str]], dict[str, list[click.Option]]]:
    """Every (command, option or argument, bad value) once; the options each command takes a value for."""
    singles, options = [], {}
    for name, command in main.commands.items():
        options[name] = [p for p in command.params if isinstance(p, click.Option) and not p.is_flag
                         and p.name != "config_file"]
        for param in options[name]:
            for value in malformed(param):
                singles.append([*base(name, checkpoint), flag(param), value])
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        for value in (PATHS + TEXTS[:8]) if arguments else ():
            singles.append([name, value])
    singles += [["nope"], [*NAMES[:2]], ["--version"], ["eval", "--help"], ["eval"], ["eval", "--combo"],
                ["eval", "--config"], ["eval", "--config", FOLDER],
                ["report", "--results", "no-rows-here", "--out", "report-of-nothing"]]  # refused: writes nothing
    return singles, options


def values_for(kind: FieldType) -> list[Any]:
    """Values of the wrong type or range for a config field, and in-range ones a network's shape
    may reject (even kernels, more scales or levels than the image has pixels for)."""
    base, bounds = kind.base, kind.range
    null = [] if kind.optional else [None]
    if typing.get_origin(base) is typing.Literal:
        first = typing.get_args(base)[0]
        return ["nope", str(first).upper() + "x", 1, True, [first], *NAMES[:2], *null]
    if base is bool:
        return ["maybe", "false", 0, 1, [True], *null]
    if base is str:
        return [1, [], *NAMES, *null]
    low = None if bounds is None else bounds.low
    high = None if bounds is None else bounds.high
    values: list[Any] = [HUGE, -HUGE, "nan", "Infinity", "abc", True, [1], [[1]], {"a": 1}, *null]
    if base is int:
        values += [1.5, -1, 0, *(v for v in (2, 4, 8, 16) if kind.problem(v) is None)]
        values += [v for v in (low, high) if v is not None and v <= 16 and kind.problem(v) is None]
        values += [v for v in (low - 1 if low is not None else None, high + 1 if high is not None else None)
                   if v is not None]
    else:
        values += [math.inf, -math.inf, -1.0, 0.0] + ([high * 10 + 1] if high is not None else [])
    return list({json.dumps(v): v for v in values}.values())


def set_text(value: Any) -> str:
    """``value`` as ``--set`` reads it (JSON; an infinite float as 1e400, which JSON reads as inf)."""
    if isinstance(value, float) and math.isinf(value):
        return "1e400" if value > 0 else "-1e400"
    return json.dumps(value)


def toml_literal(value: Any) -> str:
    """``value`` as a TOML literal (TOML has no null: None is the string "null")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "inf" if value == math.inf else "-inf" if value == -math.inf else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_literal, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_literal(v)}" for k, v in value.items()) + "}"
    return json.dumps("null" if value is None else value)  # JSON's \uXXXX escapes are TOML's


def tiny(combo, spoiled: tuple[str, str]) -> list[str]:
    """``--set`` assignments keeping every size option of ``combo``'s parts at 4 (or its bounds), but ``spoiled``."""
    sets = []
    for group, entry in [*combo.parts.items(), ("objective", combo.objective)]:
        for name, kind in field_types(entry.cls.Config).items():
            if (group, name) != spoiled and kind.base is int and any(word in name for word in SIZES):
                low = kind.range.low if kind.range and kind.range.low is not None else 1
                high = kind.range.high if kind.range and kind.range.high is not None else 4
                sets += ["--set", f"{group}.{name}={int(min(max(4, low), high))}"]
    return sets


def combo_for(group: str, name: str, spec) -> str | None:
    """A combo that takes the registered ``group`` entry ``name``, as the registry resolves it."""
    registry = get_registry()
    presets = [p.name for p in registry.presets.values() if p.slots.get(group) == name]
    for text in (*presets, *(f"{head}+{group}={name}" for head in ("gaussian-mlp", "gaussian", "vq", "svae"))):
        try:
            combo = resolve(text, spec)
        except Exception:  # not a combo for this entry: try the next
            continue
        taken = combo.objective if group == "objective" else combo.parts.get(group)
        if taken is not None and taken.name == name and group not in combo.coupled:
            return text
    return None


def config_cases() -> list[list[str]]:
    """``--set GROUP.FIELD=VALUE`` for every field of every registered part, objective and data set,
    in a combo that takes it; every group of ``COMBOS`` too; unknown and non-ASCII field names."""
    registry, spec = get_registry(), load_data("digits").spec
    targets: list[tuple[str, str]] = []  # (combo, group)
    for text in COMBOS:
        combo = resolve(text, spec)
        targets += [(text, group) for group in [*combo.parts, "objective"] if group not in combo.coupled]
    seen = {(group, resolve(text, spec).objective.name if group == "objective" else resolve(text, spec)
             .parts[group].name) for text, group in targets}
    for group, entries in registry.entries.items():
        if group in ("metric", "dataset"):
            continue
        for name in entries:
            text = combo_for(group, name, spec)
            if (group, name) not in seen and text is not None:
                seen.add((group, name))
                targets.append((text, group))
    cases = []
    for text, group in targets:
        combo = resolve(text, spec)
        entry = combo.objective if group == "objective" else combo.parts[group]
        for field, kind in field_types(entry.cls.Config).items():
            for value in values_for(kind):
                cases.append(["eval", "--combo", text, *FAST, *EVAL, *tiny(combo, (group, field)),
                              "--set", f"{group}.{field}={set_text(value)}"])
        for field in ("nope", *NAMES[:4]):
            cases.append(["eval", "--combo", text, *FAST, *EVAL, "--set", f"{group}.{field}=1"])
    small = {"canvas": 16, "scales": 1, "orientations": 1, "positions": 4}  # 48 shape images
    for name, entry in registry.entries["dataset"].items():
        dataset = f"folder:{FOLDER}" if name == "folder" else name
        for field, kind in [*field_types(entry.cls.Config).items(), ("nope", FieldType(int))]:
            keep = [arg for other, v in small.items() if other != field and name == "shapes"
                    for arg in ("--set", f"dataset.{other}={v}")]
            for value in values_for(kind):
                cases.append(["eval", *base("eval", "")[1:], "--dataset", dataset, *keep,
                              "--set", f"dataset.{field}={set_text(value)}"])
    return cases


CONFUSIONS = ["inf", "-inf", "nan", "1e400", str(HUGE), f"-{HUGE}", "[[1]]", "[1.5, 2]", '"false"', "true", "1.5",
              "0", "-1", '"x"', '""', "[]", "[[]]", "{a = 1}", '["a", 1]', "[0.1, 0.2]", '"a\\u0000b"', '"\\u0007"',
              '"é☃"', '"\\u202e"', '"\\udcff"', f'"{"a" * 300}"', '"/nonexistent/x"', "1979-05-27T07:32:00Z"]
TOP = {"combo": '"gaussian-mlp"', "epochs": "1", "no_fid": "true", "quiet": "true", "iw_samples": "2",
       "eval_images": "16", "checkpoint_every": "0", "threads": "1"}
SET_TOP = {"encoder": {"width": "4"}, "decoder": {"width": "4"}}


def toml_file(top: dict[str, str], sets: dict[str, dict[str, str]]) -> str:
    """An experiment file from literal texts: ``top`` keys, then a ``[set.GROUP]`` table per group."""
    text = "".join(f"{key} = {value}\n" for key, value in top.items())
    return text + "".join(f"[set.{group}]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items())
                          for group, fields in sets.items())


def toml_cases() -> list[tuple[str, str]]:
    """(command, TOML text): every key ``--config`` reads, spelled with dashes or underscores,
    given each type confusion; the command-line-only keys; ``set`` spoiled as a whole, by group
    and by field (every field of the base combo's Configs); unicode and control-character keys."""
    keys = sorted(set(option_names(main.commands["eval"])) | {"config", *NOT_IN_FILES} - {"config_file"})
    cases = []
    for i, key in enumerate(keys):
        spelled = key.replace("_", "-") if i % 2 else key
        rest = {k: v for k, v in TOP.items() if k != key and (k, key) != ("no_fid", "fid")}
        for value in CONFUSIONS:
            if key in ("compile", "download") and value == "true":
                continue  # a compiler, the network
            sets = {} if key == "set" else SET_TOP
            cases.append(("eval" if i % 3 else "train", toml_file({**rest, spelled: value}, sets)))
    combo = resolve("gaussian-mlp", load_data("digits").spec)
    for group, entry in [*combo.parts.items(), ("objective", combo.objective)]:
        for field, kind in field_types(entry.cls.Config).items():
            for value in values_for(kind):
                spoiled = {**SET_TOP.get(group, {}), field: toml_literal(value)}
                cases.append(("eval", toml_file(TOP, {**SET_TOP, group: spoiled})))
    for name in NAMES:
        quoted = json.dumps(name)
        cases += [("eval", toml_file({**TOP, quoted: "1"}, SET_TOP)),
                  ("eval", toml_file(TOP, {**SET_TOP, quoted: {"width": "1"}})),
                  ("eval", toml_file(TOP, {**SET_TOP, "encoder": {quoted: "1"}})),
                  ("eval", toml_file({**TOP, "combo": quoted}, SET_TOP)),
                  ("eval", toml_file({**TOP, "dataset": json.dumps(f"folder:{name}")}, SET_TOP)),
                  ("eval", toml_file({**TOP, "out": quoted, "results": quoted}, SET_TOP)),
                  ("eval", toml_file({**TOP, "set": json.dumps([f"encoder.{name}=1"])}, {}))]
    head = toml_file(TOP, {})
    cases += [("eval", head + text) for text in ("set = [1]\n", 'set = ["encoder.width"]\n', "[set]\nencoder = 1\n",
                                                 "epochs = 1\n", "[epochs]\n", "combo = [\n", "\x00 = 1\n",
                                                 "[set.encoder]\nwidth = 4\n[set.encoder]\nwidth = 5\n",
                                                 f"dataset = {json.dumps('folder:' + FOLDER)}\n")]
    return cases


def cases(count: int, seed: int, checkpoint: str, workdir: Path) -> list[list[str]]:
    """The derived cases (experiment files written into ``workdir``), then random cases of two or
    three bad options up to ``count``."""
    singles, options = option_cases(checkpoint)
    singles += config_cases()
    for i, (command, text) in enumerate(toml_cases()):
        path = workdir / f"case-{i}.toml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        singles.append([command, "--config", path.name])
    rng = random.Random(seed)
    flags = {name: [p for p in command.params if isinstance(p, click.Option) and p.is_flag and p.name not in NEVER]
             for name, command in main.commands.items()}
    combined = []
    while len(singles) + len(combined) < count:
        name = rng.choice([n for n in options if options[n]])
        args = base(name, checkpoint)
        for param in rng.sample(options[name], min(len(options[name]), rng.choice([2, 3]))):
            args += [flag(param), rng.choice(malformed(param))]
        if flags[name] and rng.random() < 0.5:
            args.append(flag(rng.choice(flags[name])))
        combined.append(args)
    return singles + combined


def image_folder(root: Path) -> None:
    """Two classes of ten 8x8 greyscale images: the data set ``folder:FOLDER`` names."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / label / f"{i}.png")


def written(root: Path) -> set[str]:
    """Every path under ``root`` but the experiment files and the image folder."""
    found = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != FOLDER]
        found.update(os.path.join(folder, name) for name in [*dirs, *files] if not name.startswith("case-"))
    return found


class Hang(Exception):
    pass


def alarm(_signum, _frame):
    raise Hang


def main_() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--cases", type=int, default=2000, help="at least this many: the derived ones, topped up")
    parser.add_argument("--sample", type=int, default=None, help="run this many, drawn at random from them")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    image_folder(workdir / FOLDER)
    (workdir / SWEEP).write_text(SWEEP_TEXT)
    (workdir / SEARCH).write_text(SEARCH_TEXT)
    all_cases = cases(args.cases, args.seed, args.checkpoint, workdir)
    if args.sample is not None:
        all_cases = random.Random(args.seed).sample(all_cases, min(args.sample, len(all_cases)))
    runner = CliRunner()
    signal.signal(signal.SIGALRM, alarm)
    bad, failed, diverged, exits, start = [], [], [], Counter(), time.monotonic()
    os.chdir(workdir)
    before = written(workdir)
    for case in all_cases:
        signal.alarm(HANG_S)
        try:
            result = runner.invoke(main, case, catch_exceptions=True)
        except Hang:
            bad.append({"case": shorten(case), "why": f"no answer in {HANG_S} s"})
            continue
        finally:
            signal.alarm(0)
        exits[result.exit_code] += 1
        after = written(workdir)
        error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            why = f"traceback: {type(result.exception).__name__}: {str(result.exception)[:200]}"
        elif result.exit_code not in (0, 1, 2):
            why = f"exit code {result.exit_code}"
        elif result.exit_code != 0 and len(error_lines) != 1:
            why = f"{len(error_lines)} error lines: {result.output[-300:]}"
        elif result.exit_code == 2 and after != before:
            why = f"a refused run wrote {sorted(after - before)[:3]}"
        else:
            if result.exit_code == 1:  # a valid run that diverged failed honestly; any other exit 1 is a refusal
                (diverged if DIVERGED in error_lines[0] else failed).append({"case": shorten(case),
                                                                             "error": error_lines[0][:200]})
            before = after
            continue
        before = after
        bad.append({"case": shorten(case), "why": why})
    print(json.dumps({"cases": len(all_cases), "exit_codes": exits, "seconds": round(time.monotonic() - start),
                      "bad": bad, "exit_1": failed, "diverged": diverged}))


def shorten(case: list[str]) -> list[str]:
    """A case as shown in the report: long values cut, an experiment file's text inlined."""
    shown = [arg if len(arg) <= 80 else f"{arg[:40]}...({len(arg)} chars)" for arg in case]
    if "--config" in case and case[-1].startswith("case-") and Path(case[-1]).is_file():
        shown.append(Path(case[-1]).read_text(encoding="utf-8", errors="surrogateescape")[-300:])
    return shown


if __name__ == "__main__":
    main_()
