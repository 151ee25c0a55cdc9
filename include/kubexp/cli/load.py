"""`kubexp load plan SUITE --scenario N --out DIR`: what JMeter will do for one scenario, before it runs."""

from __future__ import annotations

import re
import shlex
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import click

from kubexp import platform
from kubexp.cli import main
from kubexp.cli.render import find_scenario
from kubexp.load import profiles
from kubexp.load.jmeter import jmeter_command
from kubexp.load.properties import LoadParameterError, load_properties
from kubexp.platform.base import Endpoint
from kubexp.settings import SUITES_DIR
from kubexp.suite import Suite, SuiteError, load_suite, suite_files

PROPERTIES_FILE = "load.properties"
COMMAND_FILE = "jmeter-command.txt"
_PROPERTY_REF = re.compile(r"\$\{__P\(\s*([^,)\s]+)\s*(?:,([^)]*))?\)\}")


@main.group()
def load() -> None:
    """The load: JMeter plans and their properties."""


def find_suite(argument: str) -> Suite:
    """A suite file, or the suite of that name among include/suites."""
    path = Path(argument)
    try:
        if path.is_file():
            return load_suite(path)
        for candidate in suite_files(SUITES_DIR):
            if candidate.stem == argument:
                return load_suite(candidate)
    except SuiteError as exc:
        raise click.ClickException(str(exc)) from exc
    names = ", ".join(p.stem for p in suite_files(SUITES_DIR))
    raise click.BadParameter(f"{argument!r} is neither a suite file nor a suite in {SUITES_DIR} ({names})",
                             param_hint="SUITE")


def resolve(text: str, properties: Mapping[str, str]) -> str:
    """A plan field with every ${__P(name,default)} replaced as JMeter would."""
    return _PROPERTY_REF.sub(lambda m: properties.get(m.group(1), (m.group(2) or "").strip()), text)


def plan_facts(plan: Path, properties: Mapping[str, str]) -> list[tuple[str, str]]:
    """What the plan does with these properties: thread groups, timers, requests (read from the .jmx itself)."""
    facts: list[tuple[str, str]] = []
    root = ET.parse(plan).getroot()

    def prop(element: ET.Element, name: str) -> str:
        found = element.find(f"*[@name='{name}']")
        return resolve(found.text or "", properties) if found is not None else ""

    for element in root.iter():
        tag = element.tag
        if tag in ("ThreadGroup", "SetupThreadGroup"):
            facts.append((f"thread group {element.get('testname')}",
                          f"{prop(element, 'ThreadGroup.num_threads')} threads per engine, ramp-up "
                          f"{prop(element, 'ThreadGroup.ramp_time') or '0'} s, duration "
                          f"{prop(element, 'ThreadGroup.duration') or '-'} s, on error: "
                          f"{prop(element, 'ThreadGroup.on_sample_error')}"))
        elif tag.endswith("ThreadGroup"):
            facts.append((f"thread group {element.get('testname')}", tag))
        elif tag == "PoissonRandomTimer":
            facts.append(("timer", f"PoissonRandomTimer: offset {prop(element, 'ConstantTimer.delay')} ms + "
                                   f"Poisson(lambda = {prop(element, 'RandomTimer.range')} ms)"))
        elif tag == "ConstantTimer":
            facts.append(("timer", f"ConstantTimer ({element.get('testname')}), delay "
                                   f"{prop(element, 'ConstantTimer.delay')}"))
        elif tag.endswith("Timer"):
            facts.append(("timer", f"{tag} ({element.get('testname')}), parameter "
                                   f"{prop(element, 'parameters') or prop(element, 'RandomTimer.range')}"))
        elif tag == "HTTPSamplerProxy":
            def http(name: str, sampler: ET.Element = element) -> str:
                return prop(sampler, f"HTTPSampler.{name}")

            facts += [
                ("request", f"{http('method')} {http('protocol')}://{http('domain')}:{http('port')}{http('path')}"),
                ("keep-alive", "on" if http("use_keepalive") == "true" else "off (a new TCP connection per request)"),
                ("connect timeout", _timeout(http("connect_timeout"))),
                ("response timeout", _timeout(http("response_timeout"))),
            ]
    return facts


def _timeout(value: str) -> str:
    return "none" if value.strip() in ("", "0") else f"{value} ms"


def properties_text(properties: Mapping[str, str]) -> str:
    """Java properties file text (what `jmeter -q FILE` reads)."""
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("\n", "\\n")

    return "".join(f"{escape(name)}={escape(value)}\n" for name, value in properties.items())


@load.command("plan")
@click.argument("suite_ref", metavar="SUITE")
@click.option("--scenario", "wanted", required=True,
              help="Scenario id (16 hex digits) or its 0-based index in the suite's matrix.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the plan, its properties and the JMeter command into (created if missing).")
@click.option("--host", default=None, help="The SUT's address (known after deploy; default: kubernetes.ingress_host "
                                           "or 127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(1, 65535),
              help="The SUT's port (default: kubernetes.node_port 30080, or local.frontend_port, or 8080).")
def plan(suite_ref: str, wanted: str, out_dir: Path, host: str | None, port: int | None) -> None:
    """Write the exact .jmx and properties the load step would run for one scenario of SUITE (a file or name)."""
    suite = find_suite(suite_ref)
    scenario = find_scenario(suite, wanted)
    servers = (list(suite.load.servers) if isinstance(suite.load.servers, tuple)
               else [f"127.0.0.1:LOCAL_JMETER_SERVER_{i}" for i in range(suite.load.servers)])
    planned = platform.kind(suite.platform).planned_endpoint(suite)
    endpoint = Endpoint(host or planned.host, port or planned.port)
    try:
        profile = profiles.profile_of(suite.load)
        plan_file = profiles.plan_for(suite.load, scenario.params)
        properties = load_properties(scenario.params, endpoint, servers=len(servers),
                                     request_path=profiles.request_path_for(suite.load))
    except (profiles.ProfileError, LoadParameterError) as exc:
        raise click.ClickException(f"{suite.path}: scenario {scenario.index} ({scenario.id}): {exc}") from exc
    if not plan_file.is_file():
        raise click.ClickException(f"{suite.path}: load.plan {plan_file} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    copied = out_dir / plan_file.name
    shutil.copyfile(plan_file, copied)
    (out_dir / PROPERTIES_FILE).write_text(properties_text(properties))
    argv = jmeter_command(plan_file, Path("RESULTS_DIR/jmeter-TIME.jtl"), Path("RESULTS_DIR/jmeter-TIME.log"),
                          properties, servers=servers,
                          sample_sender_mode=suite.load.sample_sender_mode)
    (out_dir / COMMAND_FILE).write_text(shlex.join(argv) + "\n")
    settle = profiles.settle_s_for(suite.load)
    click.echo(f"suite {suite.name} ({suite.path}), scenario {scenario.index} ({scenario.id})")
    click.echo(f"  parameters: {', '.join(f'{k}={v}' for k, v in scenario.params.items())}")
    click.echo(f"  load profile: {profile.name} ({profile.summary})")
    click.echo(f"  plan: {plan_file}")
    click.echo(f"  engines: {len(servers)} ({', '.join(servers)})")
    click.echo(f"  settle: {settle} s between the sanity request and the load (load.settle_s)")
    for name, text in plan_facts(plan_file, properties):
        click.echo(f"  {name}: {text}")
    click.echo(f"  host and port: {endpoint.host}:{endpoint.port} (the platform's endpoint is only known after "
               f"deploy; --host/--port set them here)")
    for path in (copied, out_dir / PROPERTIES_FILE, out_dir / COMMAND_FILE):
        click.echo(path)
