"""`kubexp render SUITE_FILE --scenario ID_OR_INDEX --out DIR`: one scenario's manifests as YAML."""

from __future__ import annotations

from pathlib import Path

import click

from kubexp.cli import main
from kubexp.load import profiles
from kubexp.platform.kubernetes import manifests
from kubexp.suite import Scenario, Suite, SuiteError, load_suite


@main.command()
@click.argument("suite_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scenario", "wanted", required=True,
              help="Scenario id (16 hex digits) or its 0-based index in the suite's matrix.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the YAML files into (created if missing).")
def render(suite_file: Path, wanted: str, out_dir: Path) -> None:
    """Write the Kubernetes (and Istio) manifests of one scenario: a dry run to read or `kubectl apply -f`."""
    try:
        suite = load_suite(suite_file)
    except SuiteError as exc:
        raise click.ClickException(str(exc)) from exc
    scenario = find_scenario(suite, wanted)
    try:
        objects = manifests.render(scenario.id, scenario.params, profiles.app_settings(suite.kubernetes, suite.load))
    except (manifests.ManifestError, profiles.ProfileError) as exc:
        raise click.ClickException(f"{suite_file}: scenario {scenario.id}: {exc}") from exc
    for path in manifests.write_manifests(objects, out_dir):
        click.echo(path)


def find_scenario(suite: Suite, wanted: str) -> Scenario:
    scenarios = suite.scenarios()
    for scenario in scenarios:
        if scenario.id == wanted.lower():
            return scenario
    if wanted.isdigit() and int(wanted) < len(scenarios):
        return scenarios[int(wanted)]
    raise click.BadParameter(
        f"{wanted!r} is neither a scenario id nor an index 0..{len(scenarios) - 1} of suite {suite.name!r} "
        f"({suite.path})", param_hint="--scenario")
