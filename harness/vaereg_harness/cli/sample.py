"""``vaereg sample``: a grid of samples from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from vaereg import UsageError
from vaereg_harness.cli.app import main
from vaereg_harness.cli.options import UserPath
from vaereg_harness.run import checkpoint
from vaereg_harness.store.images import save_grid


@main.command("sample")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=UserPath(path_type=Path))
@click.option("-n", "count", type=click.IntRange(1, 10000), default=64, show_default=True)
@click.option("-o", "output", type=UserPath(path_type=Path), default=Path("samples.png"), show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--label", type=int, default=None,
              help="Class of every sample, for a model trained with --condition label [every class in turn].")
def sample_command(checkpoint_path, count, output, seed, label):
    """Draw N samples from a checkpoint's model and save them as a PNG grid."""
    from vaereg import Context

    if output.suffix.lower() != ".png":
        raise UsageError(f"-o {output}: the grid is written as PNG; give a path ending in .png")
    model = checkpoint.rebuild(checkpoint.load(checkpoint_path), checkpoint_path).eval()
    classes = model.combo.data.classes
    if label is not None and not classes:
        raise UsageError(f"--label {label}: {checkpoint_path} holds an unconditional model; drop --label")
    if label is not None and not 0 <= label < classes:
        raise UsageError(f"--label {label} is not a class of this model; give 0..{classes - 1}")
    labels = None
    if classes:
        labels = torch.full((count,), label) if label is not None else torch.arange(count) % classes
    torch.manual_seed(seed)
    context = Context(label=labels)
    with torch.no_grad():
        samples = torch.cat([model.sample(min(256, count - i), context.select(slice(i, i + 256)))
                             for i in range(0, count, 256)])
    save_grid(samples, output)
    click.echo(f"{count} samples from {model.combo.text} written to {output}")
