"""The disentanglement table of docs/metrics.md from the rows docs/metrics/shapes.toml writes: per
model, the mean and the spread (sample standard deviation) over its seeds.

    python docs/metrics/table.py shapes-results
"""

import json
import statistics
import sys
from pathlib import Path

from vaereg_harness.store.results import read_results

COLUMNS = [("MIG", "mig"), ("DCI-D", "dci_disentanglement"), ("DCI-C", "dci_completeness"), ("SAP", "sap"),
           ("beta-VAE", "betavae"), ("FactorVAE", "factorvae"), ("NLL (nats)", "nll_nats"),
           ("train s", "train_seconds")]


def label(row: dict) -> str:
    beta = json.loads(row["config"])["objective"].get("beta")
    return f"{row['combo']} (beta {beta:g})" if row["combo"] in ("gaussian", "beta-vae") and beta else row["combo"]


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    digits = 1 if abs(mean) >= 10 else 3
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def main(results: Path) -> None:
    models: dict[str, list[dict]] = {}
    for row in read_results(results).to_pylist():
        models.setdefault(label(row), []).append(row)
    print("| model | seeds | " + " | ".join(heading for heading, _ in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, rows in models.items():
        cells = [cell([r[c] for r in rows if r[c] is not None]) for _, c in COLUMNS]
        print(f"| `{name}` | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "shapes-results"))
