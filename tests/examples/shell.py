"""Shell examples (``bash``, ``sh``, ``shell`` blocks): each runs with ``bash -e -o pipefail`` in its
page's folder, on the virtual environment's PATH, without network, and fails with its output when
it exits non-zero.

Two rewrites make a documented command testable as documented:

- budget: under ``--example-budget small`` (the default) ``vaereg`` is a shell function that
  appends budget-cutting options to ``eval``, ``train``, ``sweep`` and ``search`` (``BUDGET``);
  options given later on a command line win, and they override an experiment file's keys;
- refusals: a line whose comment starts ``# refused`` documents a command vaereg refuses; it must
  exit 2 with a one-line ``Error:`` message, and the block goes on.
"""

import functools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: vaereg subcommand -> the options appended to it under the small budget: one epoch of each stage,
#: K=10 for the NLL, no FID (its classifier alone trains 690 steps), one thread; a sweep or search
#: is planned and checked point by point (every end of a search range), but nothing trains.
BUDGET = {
    "eval": ("--epochs", "1", "--prior-epochs", "1", "--iw-samples", "10", "--no-fid", "--threads", "1"),
    "train": ("--epochs", "1", "--prior-epochs", "1", "--threads", "1"),
    "sweep": ("--dry-run",),
    "search": ("--dry-run",),
}
#: an address nothing listens on: any HTTP(S) client that honours the proxy variables fails at once
NO_NETWORK = {name: "http://127.0.0.1:9" for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
REFUSED = re.compile(r"^(?P<indent>\s*)(?P<command>[^#\n]*?)\s+#\s*refused\b.*$", re.M)
TIMEOUT_S = 3600
OUTPUT_TAIL = 6000

REFUSAL_CHECK = r"""
__refused() {  # the command must exit 2 with a one-line "Error:" message (click prints usage lines above it)
  local rc=0 err
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  if [ "$rc" -ne 2 ] || [ "$(printf '%s\n' "$err" | tail -n 1 | grep -c '^Error: ')" -ne 1 ]; then
    printf 'expected a one-line refusal (exit 2, "Error: ...") from: %s\ngot exit %s:\n%s\n' "$*" "$rc" "$err" >&2
    return 1
  fi
  printf '%s\n' "$err" | tail -n 1
}
"""


@dataclass(frozen=True)
class Shell:
    """How a page's shell blocks run: its folder, the environment and the budget."""

    folder: Path
    env: dict[str, str]
    budget: str

    @classmethod
    def of(cls, folder: Path, budget: str, cache: Path) -> "Shell":
        venv_bin = str(Path(sys.executable).parent)
        env = {**os.environ, **NO_NETWORK, "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
               "VAEREG_CACHE": str(cache), "PIP_NO_INDEX": "1", "HF_HUB_OFFLINE": "1", "no_proxy": "",
               "NO_PROXY": ""}
        return cls(folder, env, budget)

    def script(self, source: str) -> str:
        """The block as the shell runs it: the budget function, the refusal check, the block."""
        prelude = [REFUSAL_CHECK]
        if self.budget == "small":
            cases = "".join(f"    {sub}) set -- \"$@\" {shlex.join(options)} ;;\n" for sub, options in BUDGET.items())
            prelude.append(f'vaereg() {{\n  case "$1" in\n{cases}  esac\n  command vaereg "$@"\n}}\n')
        return "".join(prelude) + REFUSED.sub(r"\g<indent>__refused \g<command>", source)

    def run(self, source: str) -> str | None:
        """Run one block; None when it exits 0, else the failure message with the output's tail."""
        proc = subprocess.run([*isolated(), "bash", "-e", "-o", "pipefail", "-c", self.script(source)],
                              cwd=self.folder, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S)
        if proc.returncode == 0:
            return None
        tail = proc.stdout[-OUTPUT_TAIL:]
        return f"the block exited {proc.returncode} in {self.folder}:\n{source}\n--- output (its end) ---\n{tail}"


@functools.cache
def isolated() -> tuple[str, ...]:
    """A prefix that runs a command in a network namespace of its own (no interface but a down
    loopback) where unprivileged user namespaces are allowed; elsewhere only NO_NETWORK's proxies
    stand in the way."""
    try:
        subprocess.run(["unshare", "--net", "--map-root-user", "true"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ()
    return ("unshare", "--net", "--map-root-user")
