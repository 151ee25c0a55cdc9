"""`kubexp load plan`: the exact plan and properties the load step runs, shown before anything runs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner

from kubexp.cli import main
from kubexp.load import profiles
from kubexp.settings import SUITES_DIR


def properties(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_paper_etcd_plan_shows_the_authors_traffic(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["load", "plan", "paper-etcd", "--scenario", "0", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "load profile: paper" in out
    assert "timer: PoissonRandomTimer: offset 0 ms + Poisson(lambda = 20 ms)" in out
    assert "keep-alive: off (a new TCP connection per request)" in out
    assert "settle: 60 s between the sanity request and the load" in out
    assert "ramp-up 1 s" in out and "10 threads per engine" in out  # 60 workers over 6 JMeter servers
    assert "connect timeout: 2000 ms" in out and "response timeout: none" in out
    assert "GET http://127.0.0.1:30080/photo.png?left=0&top=0&right=30&bottom=30" in out
    # the files are the plan itself, byte for byte, and the properties the load step passes
    plan = tmp_path / "paper-closed-loop.jmx"
    assert plan.read_bytes() == profiles.PROFILES["paper"].plan.read_bytes()
    sampler = ET.parse(plan).getroot().find(".//HTTPSamplerProxy")
    assert sampler is not None and sampler.find("boolProp[@name='HTTPSampler.use_keepalive']").text == "false"
    props = properties(tmp_path / "load.properties")
    assert (props["path"], props["server_threads"], props["think_time_ms"], props["response_timeout_ms"]) == (
        profiles.PAPER_CROP_PATH, "10", "20", "0")
    assert props["clients"] == "10" and props["connection_timeout_milliseconds"] == "2000"  # the authors' names
    command = (tmp_path / "jmeter-command.txt").read_text()
    assert "-Gthink_time_ms=20" in command and "-R loadgen-1:1099,loadgen-2:1099" in command


def test_demo_plan_is_kubexps_own_profile(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["load", "plan", str(SUITES_DIR / "demo.yaml"), "--scenario", "1",
                                       "--out", str(tmp_path), "--port", "18000"])
    assert result.exit_code == 0, result.output
    assert "load profile: kubexp" in result.output and "keep-alive: on" in result.output
    assert "ConstantTimer (exponential think time), delay ${__jexl3((0.5 - 50 * ctx.getClass().forName(" \
        "'java.lang.Math').log(1.0 - new('java.util.Random').nextDouble())).longValue())}" in result.output
    assert "settle: 0 s" in result.output
    assert f"GET http://127.0.0.1:18000{profiles.KUBEXP_CROP_PATH}" in result.output
    assert properties(tmp_path / "load.properties")["server_threads"] == "8"


def test_unknown_suite_and_scenario_are_named(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["load", "plan", "no-such-suite", "--scenario", "0", "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "no-such-suite" in missing.output and "paper-etcd" in missing.output
    beyond = runner.invoke(main, ["load", "plan", "paper-etcd", "--scenario", "999", "--out", str(tmp_path)])
    assert beyond.exit_code == 2 and "0..23" in beyond.output
