"""`kubexp report SUITE [--out DIR]`."""

from __future__ import annotations

from pathlib import Path

import click

from kubexp import settings
from kubexp.cli import main


def suite_name(argument: str) -> str:
    """A suite name, or the name inside a suite file when the argument is a path to one."""
    path = Path(argument)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        from kubexp.suite import load_suite

        return load_suite(path).name
    return argument


@main.command()
@click.argument("suite")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for report.html and figures/ (default: <run folder>/reports/SUITE).")
@click.option("--experiment", "experiments", multiple=True,
              help="A finished experiment to draw as a timeline (Figs. 6-7); repeat for several. Default: the one "
                   "with the most failures/s and the one with the most platform events.")
def report(suite: str, out_dir: Path | None, experiments: tuple[str, ...]) -> None:
    """Write the HTML report of SUITE (a suite name or file) from the results database.

    Reads KUBEXP_DATABASE_URL (default: the local services' database).
    """
    from kubexp.analysis.loaders import AnalysisDataError
    from kubexp.analysis.report import build_report
    from kubexp.store import db

    name = suite_name(suite)
    target = out_dir or settings.run_dir() / "reports" / name
    try:
        with db.connect() as conn:
            result = build_report(conn, name, target, experiments=experiments)
    except (AnalysisDataError, db.StoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"report: {result.path}")
    click.echo(f"figures: {len(result.figures)} PNG in {target / 'figures'}")
    click.echo("seconds: " + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in result.timings.items()))
