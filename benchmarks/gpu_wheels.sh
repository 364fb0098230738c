#!/usr/bin/env bash
# Gathers what benchmarks/gpu_check.sh needs on a GPU machine that has no network (issue 27):
# the wheels of the packages it lacks, into .gpu-wheels/, and Fashion-MNIST's four IDX files,
# into data/fashion-mnist/ (both gitignored). Run it here, before the device call; it prints the
# total size (the device tool carries at most 64 MiB) and the exact call to make.
#
#   bash benchmarks/gpu_wheels.sh            # FASHION_MNIST=DIR: where the four .gz files are
#
# The GPU machine has Python 3.12, torch, torchvision, pluggy, click, pyarrow, scikit-learn (so
# numpy and scipy), pytest (so packaging) and pytest-benchmark. vaereg also needs torch-fidelity,
# tqdm and matplotlib (run/pictures.py draws with it); matplotlib needs contourpy, cycler,
# fonttools, kiwisolver, pyparsing and python-dateutil, which needs tzdata. tensorboard is left
# out: only `--log tensorboard` imports it. setuptools (>= 77, pyproject's build backend) is
# carried so gpu_check.sh can install vaereg editable from the carried tree: the code it measures
# is then the tree's own, not a wheel built here that an edit after this script would leave stale.
# Versions are this environment's, the ones the test suite runs with.
set -euo pipefail

cd "$(dirname "$0")/.."
WHEELS=.gpu-wheels
DATA=data/fashion-mnist
SOURCE=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
LIMIT_MIB=64
PACKAGES=(torch-fidelity tqdm matplotlib contourpy cycler fonttools kiwisolver pyparsing python-dateutil tzdata
          setuptools)

pins=()
for name in "${PACKAGES[@]}"; do
    version=$(python -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name")
    pins+=("$name==$version")
done

rm -rf "$WHEELS"
mkdir -p "$WHEELS" "$DATA"
# manylinux_2_28 (torch's own floor) or the older 2014 tag; pure-Python wheels match either
python -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --no-deps -d "$WHEELS" "${pins[@]}"

# every requirement of a carried wheel is carried too, or comes with what the machine has
python - "$WHEELS" <<'PY'
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

MACHINE = {"torch", "torchvision", "pluggy", "click", "pyarrow", "scikit-learn", "pytest", "pytest-benchmark",
           "numpy", "scipy", "pillow", "packaging", "filelock", "typing-extensions"}  # and theirs
TARGET = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython", "extra": ""}
wheels = sorted(Path(sys.argv[1]).glob("*.whl"))
carried = {canonicalize_name(w.name.split("-")[0]) for w in wheels}
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    if wheel.name.startswith("setuptools-"):
        continue  # installed --no-deps: it vendors its own
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate(TARGET):
                continue
            if canonicalize_name(req.name) not in carried | MACHINE:
                sys.exit(f"error: {wheel.name} needs {req}, neither carried nor on the GPU machine; add it to PACKAGES")
PY

for stem in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    cp "$SOURCE/$stem.gz" "$DATA/"
done

wheels=$(du -cb "$WHEELS"/* | tail -1 | cut -f1)
data=$(du -cb "$DATA"/* | tail -1 | cut -f1)
total=$((wheels + data))
mib() { python -c "import sys; print(f'{int(sys.argv[1]) / 2**20:.1f}')" "$1"; }
echo "wheels: $(find "$WHEELS" -name '*.whl' | wc -l) files, $(mib "$wheels") MiB in $WHEELS/"
echo "data:   4 files, $(mib "$data") MiB in $DATA/"
echo "total:  $(mib "$total") MiB of the device tool's $LIMIT_MIB MiB"
if ((total > LIMIT_MIB * 2**20 * 9 / 10)); then
    echo "error: over 90% of the $LIMIT_MIB MiB the device tool carries; drop a wheel or a file" >&2
    exit 1
fi
cat <<EOF

The device call (one run, about 6 minutes; the table comes back as \$OUT/gpu_check.md):
  run(command="bash benchmarks/gpu_check.sh", carry=["$WHEELS", "$DATA"], timeout_s=420)
EOF
