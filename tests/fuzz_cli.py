"""The fuzz run behind ``tests/test_fuzz.py``, in a process of its own (runs change process-wide
torch settings): malformed values generated from the command line's own option table, one or
several per case, against every command. Prints one JSON object: the case count and every case
that ended in a traceback, a hang, more than one error line, or a refused run that wrote a row.

    python -m tests.fuzz_cli --workdir DIR --checkpoint CKPT [--cases 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
from collections import Counter
from pathlib import Path

import click
from click.testing import CliRunner

from vaereg_harness.cli import main

HANG_S = 20

INTS = ["-1", "0", "1e3", "nan", "", "abc", "9223372036854775808", "99999999999999999999", "1000000000", "-0", "2.5"]
FLOATS = ["nan", "inf", "-inf", "-1", "1e300", "0", "abc", "", "1e-320", "-0.0"]
TEXTS = ["", "+", "=", "a" * 300, "gaussian+", "+gaussian", "nope", "gaussian+gaussian", "encoder=", "x" * 5000,
         "folder:/nonexistent", "folder:/etc", "folder:", "vq+pixelcnn+pixelcnn", "gaussian+likelihood=nope",
         "prior=", "../..", "é", " ", "gaussian-mlp+encoder=iaf+prior=vamp+likelihood=pixelcnn"]
SETS = ["encoder.=1", "x.y=z", "objective.beta=1e400", "encoder.latent_dim=99999999999999999999", "objective",
        "=", "encoder.latent_dim=-3", "objective.iw_k=1000000000", "likelihood.mixtures=0", "prior.width=abc",
        "encoder.width=1.5", "objective.free_bits=1", "objective.warmup=2", "decoder.width=null", "encoder.latent_dim"]
PATHS = ["/etc/passwd", "/nonexistent/deeper/x", "", "a" * 300, "/dev/null", "/proc", "."]


def malformed(param: click.Parameter) -> list[str]:
    """Bad values for ``param``, chosen by its type and name."""
    if param.name in ("assignments",):
        return SETS
    kind = param.type
    if isinstance(kind, click.Choice):
        return ["nope", "", kind.choices[0].upper() + "x"]
    if isinstance(kind, click.Path):
        return PATHS
    if isinstance(kind, click.types.IntParamType | click.IntRange):
        return INTS
    if isinstance(kind, click.types.FloatParamType | click.FloatRange):
        return FLOATS
    return TEXTS + INTS[:4]


def flag(param: click.Option) -> str:
    return next(opt for opt in param.opts if opt.startswith("--") or opt.startswith("-"))


def base(command: str, checkpoint: str) -> list[str]:
    """A quick valid invocation that each case spoils."""
    fast = ["--combo", "gaussian-mlp", "--epochs", "1", "--set", "encoder.width=4", "--set", "decoder.width=4",
            "--quiet", "--checkpoint-every", "0"]
    return {"eval": ["eval", *fast, "--iw-samples", "2", "--no-fid"], "train": ["train", *fast],
            "sample": ["sample", checkpoint, "-n", "4", "-o", "fuzz.png"], "plugins": ["plugins"],
            "results": ["results"], "report": ["report"], "check-plugin": ["check-plugin", "loggers"]}[command]


def cases(count: int, seed: int, checkpoint: str) -> list[list[str]]:
    """Every (command, option, bad value) once, then random cases of two or three bad options."""
    singles, options = [], {}
    for name, command in main.commands.items():
        options[name] = [p for p in command.params if isinstance(p, click.Option) and not p.is_flag
                         and p.name not in ("config_file",)]
        for param in options[name]:
            for value in malformed(param):
                singles.append([*base(name, checkpoint), flag(param), value])
        if name == "sample":
            singles += [["sample", path] for path in PATHS]
    rng = random.Random(seed)
    combined = []
    while len(singles) + len(combined) < count:
        name = rng.choice([n for n in options if options[n]])
        args = base(name, checkpoint)
        for param in rng.sample(options[name], min(len(options[name]), rng.choice([2, 3]))):
            args += [flag(param), rng.choice(malformed(param))]
        combined.append(args)
    return singles + combined


def rows(results: Path) -> int:
    return len(list(results.glob("*.parquet"))) if results.is_dir() else 0


class Hang(Exception):
    pass


def alarm(_signum, _frame):
    raise Hang


def main_() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runner = CliRunner()
    signal.signal(signal.SIGALRM, alarm)
    bad, failed, all_cases, exits = [], [], cases(args.cases, args.seed, args.checkpoint), Counter()
    os.chdir(args.workdir)
    for case in all_cases:
        before = rows(Path("vaereg-results"))
        signal.alarm(HANG_S)
        try:
            result = runner.invoke(main, case, catch_exceptions=True)
        except Hang:
            bad.append({"case": case, "why": f"no answer in {HANG_S} s"})
            continue
        finally:
            signal.alarm(0)
        exits[result.exit_code] += 1
        error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            why = f"traceback: {type(result.exception).__name__}: {str(result.exception)[:200]}"
        elif result.exit_code not in (0, 1, 2):
            why = f"exit code {result.exit_code}"
        elif result.exit_code != 0 and len(error_lines) != 1:
            why = f"{len(error_lines)} error lines: {result.output[-300:]}"
        elif result.exit_code == 2 and rows(Path("vaereg-results")) != before:
            why = "a refused run wrote a row"
        else:
            if result.exit_code == 1:
                failed.append({"case": case, "error": error_lines[0][:200]})
            continue
        bad.append({"case": case, "why": why})
    print(json.dumps({"cases": len(all_cases), "exit_codes": exits, "bad": bad, "exit_1": failed}))


if __name__ == "__main__":
    main_()
