"""JMeter's RMI over SSL between the master and the local JMeter servers, with a keystore per run folder.

Without it a JMeter server runs any plan any local user sends to its port, as the server's user.
JMeter's "Remote testing" > "Setting up SSL" reads `server.rmi.ssl.keystore.*` and
`server.rmi.ssl.truststore.*` on both sides; the keystore holds one RSA key pair (alias `rmi`, as
JMeter's create-rmi-keystore script makes it), made once per run folder by the keytool of the JDK that
runs JMeter, with a random password. It and the properties file naming it are 0600 in a 0700 folder;
master and servers read that file with `-q`, so the password never shows on a command line.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from kubexp.load.home import java_executable
from kubexp.load.ramdisk import private_folder

ALIAS = "rmi"
PROPERTIES = "rmi-ssl.properties"
KEYSTORE = "rmi_keystore.p12"


class RmiSslError(RuntimeError):
    """The RMI keystore cannot be made; the message names the folder or program and what to do."""


def folder_of_run() -> Path:
    from kubexp.settings import run_dir

    return run_dir() / "jmeter-rmi"


def ssl_properties(folder: Path | None = None) -> Path:
    """The JMeter properties file (for `-q`) that turns RMI SSL on with this run folder's keystore; made on
    first use. `folder` defaults to <run folder>/jmeter-rmi."""
    folder = private_folder(folder or folder_of_run())
    properties, keystore = folder / PROPERTIES, folder / KEYSTORE
    if properties.is_file() and keystore.is_file():
        return properties
    keytool = Path(os.path.realpath(java_executable())).with_name("keytool")
    if not keytool.is_file():
        raise RmiSslError(f"no keytool beside {os.path.realpath(java_executable())} (the JDK that runs JMeter); "
                          f"install the full JRE package (Debian: openjdk-17-jre-headless)")
    password = secrets.token_urlsafe(24)
    staging = folder / f".{KEYSTORE}.{os.getpid()}"
    staging.unlink(missing_ok=True)
    done = subprocess.run(
        [str(keytool), "-genkeypair", "-alias", ALIAS, "-keyalg", "RSA", "-keysize", "2048", "-validity", "3650",
         "-dname", "CN=kubexp JMeter RMI", "-storetype", "PKCS12", "-keystore", str(staging),
         "-storepass:env", "KUBEXP_RMI_STOREPASS", "-keypass:env", "KUBEXP_RMI_STOREPASS"],
        env={**os.environ, "KUBEXP_RMI_STOREPASS": password}, capture_output=True, text=True, timeout=120,
        check=False)
    if done.returncode != 0:
        staging.unlink(missing_ok=True)
        raise RmiSslError(f"{keytool} could not make the JMeter RMI keystore in {folder} (exit {done.returncode}: "
                          f"{(done.stderr or done.stdout).strip()[-300:]})")
    staging.chmod(0o600)
    path = str(keystore).replace("\\", "\\\\")  # a properties file's only escape character in a value
    lines = ["server.rmi.ssl.disable=false"]
    for side in ("keystore", "truststore"):
        lines += [f"server.rmi.ssl.{side}.type=PKCS12", f"server.rmi.ssl.{side}.file={path}",
                  f"server.rmi.ssl.{side}.password={password}"]
    lines.append(f"server.rmi.ssl.keystore.alias={ALIAS}")
    descriptor = os.open(folder / f".{PROPERTIES}.{os.getpid()}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write("\n".join(lines) + "\n")
    staging.replace(keystore)
    (folder / f".{PROPERTIES}.{os.getpid()}").replace(properties)
    return properties
