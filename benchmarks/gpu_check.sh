#!/usr/bin/env bash
# The GPU check (issue 27): the CUDA tests, the harness/bare throughput ratios, one Fashion-MNIST
# run each of gaussian and nvae with FID, and bf16 autocast and torch.compile on gaussian, vq and
# nvae, into one Markdown table headed by the device it ran on: $OUT/gpu_check.md, also printed
# (each step's stderr goes to $OUT/gpu_check-logs/). A step that fails or overruns its budget
# writes its row as failed with a one-line reason, and the check goes on; no step starts past
# GPU_CHECK_SECONDS (350: the whole stays under 6 of the device tool's 15 minutes). On a CPU every
# budget is GPU_CHECK_SCALE (4) times longer.
#
#   bash benchmarks/gpu_wheels.sh                      # here, first: the wheels and data to carry
#   bash benchmarks/gpu_check.sh                       # on the GPU machine
#   GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh  # a dry run of the plumbing on a CPU, tiny budgets
#
# The GPU machine has no network. What vaereg needs beyond its torch, torchvision, pluggy, click,
# pyarrow, scikit-learn and pytest is installed from the wheels carried in .gpu-wheels/ (pip
# --no-index); then vaereg itself, editable from this tree (--no-deps --no-build-isolation, with the
# carried setuptools as the build backend), so its plugins' entry points exist and the code checked
# is the tree's own. PIP_BREAK_SYSTEM_PACKAGES: the machine is lent for this run alone.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${GPU_CHECK_DEVICE:-cuda}
if [[ $DEVICE == cpu ]]; then SCALE=${GPU_CHECK_SCALE:-4}; else SCALE=${GPU_CHECK_SCALE:-1}; fi
TOTAL=${GPU_CHECK_SECONDS:-$((350 * SCALE))}
OUT=${OUT:-$(mktemp -d)}
TABLE=$OUT/gpu_check.md
LOGS=$OUT/gpu_check-logs
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
# one FID classifier and reference statistics for both Fashion-MNIST runs, never the user's cache
VAEREG_CACHE=$(mktemp -d)
trap 'rm -rf "$VAEREG_CACHE"' EXIT
export PYTHON VAEREG_CACHE WHEELS=.gpu-wheels PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
CHECK=("$PYTHON" -m benchmarks.gpu_check --table "$TABLE" --device "$DEVICE")
if [[ $DEVICE == cpu ]]; then CHECK+=(--tiny); fi
mkdir -p "$OUT" "$LOGS"
started=$SECONDS

row() {  # row STEP STATUS [SECONDS] [FIGURES]: a row written here, without Python
    printf '| %s | - | %s | - | - | %s | %s |\n' "$1" "${3:--}" "${4:--}" "${2//|//}" | tee -a "$TABLE"
}

install() {  # what vaereg needs and the machine lacks, then vaereg; prints what it installed
    set -euo pipefail  # it runs in a bash of its own, under timeout
    local name missing=() done=()
    for name in torch-fidelity tqdm matplotlib filelock pillow scipy; do
        "$PYTHON" -c 'import importlib.metadata as m, sys; m.version(sys.argv[1])' "$name" 2> /dev/null ||
            missing+=("$name")
    done
    if ((${#missing[@]})); then
        "$PYTHON" -m pip install --no-index --find-links "$WHEELS" "${missing[@]}" >&2
        done+=("${missing[@]}")
    fi
    # vaereg_harness lives under harness/: importable from here only once vaereg is installed
    if ! "$PYTHON" -c 'import sys, pathlib, vaereg_harness
sys.exit(not pathlib.Path(vaereg_harness.__file__).resolve().is_relative_to(pathlib.Path.cwd().resolve()))' \
            2> /dev/null; then
        if ! "$PYTHON" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' \
                2> /dev/null; then
            # setuptools vendors its own dependencies: --no-deps
            "$PYTHON" -m pip install --no-index --find-links "$WHEELS" --no-deps 'setuptools>=77' >&2
            done+=(setuptools)
        fi
        "$PYTHON" -m pip install --no-index --no-deps --no-build-isolation -e . >&2
        done+=("vaereg (editable)")
    fi
    "$PYTHON" -c 'import importlib.metadata as m, torch_fidelity, matplotlib, vaereg_harness.cli
names = {e.name for e in m.entry_points(group="vaereg")}
assert {"gaussian", "vq", "nvae", "datasets"} <= names, f"vaereg entry points: {sorted(names)}"'
    echo "${done[*]:-nothing: all present}"
}
export -f install

# step NAME SECONDS COMMAND...: COMMAND under the smaller of SECONDS (times SCALE) and the time
# left; its failure or overrun becomes the step's row, with the reason
step() {
    local name=$1 budget=$(($2 * SCALE)) left rc=0 reason
    shift 2
    left=$((TOTAL - (SECONDS - started)))
    if ((left < budget)); then budget=$left; fi
    if ((budget < 10)); then
        row "$name" "FAILED: not run: the check's ${TOTAL} s were spent"
        return 0
    fi
    echo "== $name: at most ${budget} s ($((SECONDS - started)) s in)" >&2
    timeout --kill-after=5 "$budget" "$@" 2> "$LOGS/$name.log" || rc=$?
    if ((rc == 0)); then return 0; fi
    if ((rc == 124 || rc == 137)); then
        reason="timed out after ${budget} s"
    else
        reason="exit $rc: $(grep -v '^\s*$' "$LOGS/$name.log" | tail -n 1 | cut -c 1-300)"
    fi
    tail -n 20 "$LOGS/$name.log" >&2
    row "$name" "FAILED: $reason"
}

step header 30 "${CHECK[@]}" header
began=$SECONDS
installed=$(timeout --kill-after=5 $((90 * SCALE)) bash -c install 2> "$LOGS/install.log") && rc=0 || rc=$?
if ((rc == 0)); then
    row install ok $((SECONDS - began)) "installed: $installed"
else
    tail -n 20 "$LOGS/install.log" >&2
    row install "FAILED: exit $rc: $(grep -v '^\s*$' "$LOGS/install.log" | tail -n 1 | cut -c 1-300)"
fi
step tests 100 "${CHECK[@]}" tests
step ratio-training-gaussian-mlp 45 "${CHECK[@]}" ratio training-gaussian-mlp
step ratio-training-gaussian 45 "${CHECK[@]}" ratio training-gaussian
step ratio-nll 40 "${CHECK[@]}" ratio nll
step fashion-gaussian 50 "${CHECK[@]}" fashion gaussian
step fashion-nvae 80 "${CHECK[@]}" fashion nvae
step family-gaussian 50 "${CHECK[@]}" family gaussian
step family-vq 50 "${CHECK[@]}" family vq
step family-nvae 100 "${CHECK[@]}" family nvae

echo >&2
echo "GPU check: $((SECONDS - started)) s; the table is $TABLE" >&2
