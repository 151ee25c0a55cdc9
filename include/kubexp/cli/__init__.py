"""The `kubexp` command. Each command group lives in its own module below."""

from __future__ import annotations

import importlib
from typing import Any

import click

from kubexp.settings import SettingsError


# Command name -> (the module that defines it, the first sentence of its help). A command's module is imported
# only when that command runs: `kubexp jtl aggregate` loads neither Airflow's client nor pandas, and `kubexp --help`
# lists these sentences without importing any (tests/cli checks them against the commands' own help).
COMMANDS = {
    "app": ("app", "The application under test (app/, a Flask + Pillow crop service)."),
    "backfill": ("trigger", "Fill SUITE's experiment slots with Airflow's backfill (one run per slot, one at a time)."),
    "cluster": ("cluster", "A real single-node Kubernetes (API server, etcd, controllers, kubelet, kube-proxy, "
                           "containerd) on 127.0.0.1, built from the package registries; its folder is "
                           "KUBEXP_CLUSTER_DIR (default /var/lib/kubexp-cluster)."),
    "compare": ("verdict", "Judge the candidate level of a matrix factor against the baseline on every combination "
                           "of the other parameters: better, worse, equivalent (within the margin) or inconclusive, "
                           "from an interval on the ratio of the median successful responses/s over experiments "
                           "(method: kubexp.analysis.gate, docs/ci.md)."),
    "db": ("db", "The results database (KUBEXP_DATABASE_URL, else the one `kubexp services up` started)."),
    "demo": ("demo", "Run the demo suite on the local platform through Airflow and print where the results are."),
    "dimension": ("dimension", "Offered request rate (equation 5) and, with --pods, the throughput plateau, rho and "
                               "saturating workers."),
    "jtl": ("jtl", "JMeter result files (JTL, CSV format)."),
    "load": ("load", "The load: JMeter plans and their properties."),
    "render": ("render", "Write the Kubernetes (and Istio) manifests of one scenario: a dry run to read or "
                         "`kubectl apply -f`."),
    "report": ("report", "Write the HTML report of SUITE (a suite name or file) from the results database."),
    "services": ("services", "Start, stop and inspect the local services (PostgreSQL, Prometheus, Airflow)."),
    "suite": ("suite", "Suite files (include/suites/*.yaml): parameter matrix, repetitions, collection settings."),
    "trigger": ("trigger", "Start one run (= one experiment) of SUITE's DAG; with --until-done, a chain of runs "
                           "until the suite is done."),
    "verdict": ("verdict", "Judge every scenario x SLO of SUITE (a name or file) over its finished experiments: met, "
                           "missed or undecided, from the interval of the median of the per-experiment values."),
}


class _Main(click.Group):
    """Settings from the environment that cannot be used are a one-line error, in every command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            importlib.import_module(f"kubexp.cli.{COMMANDS[cmd_name][0]}")
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click.Group lists the commands, from COMMANDS' sentences."""
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        with formatter.section("Commands"):
            formatter.write_dl([(name, click.Command(name, help=summary).get_short_help_str(limit))
                                for name, (_module, summary) in sorted(COMMANDS.items())])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Main)
@click.version_option(package_name="kubexp")
def main() -> None:
    """kubexp: repeatable performance experiments on Kubernetes, driven by Apache Airflow."""
