"""``vaereg results`` (the store as a table, sortable by any column in its direction) and
``vaereg report`` (HTML and Markdown)."""

from __future__ import annotations

from pathlib import Path

import click

from vaereg_harness.cli.app import main
from vaereg_harness.cli.options import UserPath
from vaereg_harness.store.files import check_folder
from vaereg_harness.store.leaderboard import format_table, sort_key
from vaereg_harness.store.results import read_results


def skipped_file(path: Path, why: str) -> None:
    click.echo(f"note: skipped {path}, not a readable results file ({why})", err=True)


@main.command("results")
@click.option("--results", type=UserPath(path_type=Path), default=Path("vaereg-results"), show_default=True)
@click.option("--combo", default=None, help="Only rows of this combo (as given to eval).")
@click.option("--sort", "sort_by", default=None, metavar="COLUMN",
              help="Best first by a metric column: descending where higher is better (a score), ascending "
                   "otherwise; rows without a value last [oldest first].")
def results_command(results, combo, sort_by):
    """Show the results store as a table."""
    key = sort_key(sort_by) if sort_by else None  # an unknown column is refused before anything is read
    rows = read_results(results, on_skip=skipped_file).to_pylist()
    if combo is not None:
        rows = [r for r in rows if r["combo"] == combo]
    if not rows:
        click.echo(f"no rows in {results}/" + (f" for combo {combo!r}" if combo else ""), err=True)
        return
    click.echo(format_table(sorted(rows, key=key) if key else rows))


@main.command("report")
@click.option("--results", type=UserPath(path_type=Path), default=Path("vaereg-results"), show_default=True)
@click.option("--out", type=UserPath(path_type=Path), default=Path("vaereg-report"), show_default=True,
              help="Folder for index.html, report.md and figures/.")
@click.option("--title", default="vaereg report", show_default=True)
def report_command(results, out, title):
    """Write an HTML page (one file, every image embedded) and its Markdown twin from a results
    store and its run folders: a sortable leaderboard per data set, NLL against FID, training
    curves and sample grids."""
    from vaereg_harness.store.report import write_report

    check_folder(out, "--out")  # made once the store proves to hold rows
    page, twin = write_report(results, out, title, on_skip=skipped_file)
    click.echo(f"report written to {page} and {twin}")
