"""`start` / `stop` of the local cluster's etcd, the way the etcd step drives a Kubespray unit over SSH.

The etcd env file (KEY=value lines, read literally as systemd's EnvironmentFile is) says where the data
lives; KUBEXP_FSYNC_DELAY_MS > 0 in it starts etcd under strace's fault injection, which delays
every fdatasync by that much (an emulated network disk, as on the local platform).

    python -m kubexp.platform.kubernetes.localcluster.etcd_service ROOT start|stop|fsync-delay [MS]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from kubexp.processes import ManagedProcess

FSYNC_DELAY_KEY = "KUBEXP_FSYNC_DELAY_MS"


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and key.strip():
            values[key.strip()] = value
    return values


def etcd_process(root: Path) -> ManagedProcess:
    """The etcd of the cluster under `root` as its env file describes it."""
    env = read_env_file(root / "etcd" / "etcd.env")
    argv = [str(root / "bin" / "etcd")]
    delay_ms = float(env.get(FSYNC_DELAY_KEY) or 0)
    if delay_ms > 0:
        strace = shutil.which("strace")
        if strace is None:
            raise SystemExit(f"{FSYNC_DELAY_KEY}={delay_ms:g} in {root}/etcd/etcd.env needs strace (Debian package)")
        argv = [strace, "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync",
                "-e", f"inject=fdatasync:delay_exit={round(delay_ms * 1000)}", *argv]
    port = int(env["ETCD_LISTEN_CLIENT_URLS"].rsplit(":", 1)[1])
    return ManagedProcess(name="etcd", argv=argv, state_dir=root,
                          env={k: v for k, v in env.items() if k.startswith("ETCD_")}, ports=[port])


def set_fsync_delay(env_file: Path, delay_ms: float) -> None:
    """Rewrite the KUBEXP_FSYNC_DELAY_MS line of the env file (read at etcd's next start)."""
    lines = [line for line in env_file.read_text().splitlines() if not line.startswith(f"{FSYNC_DELAY_KEY}=")]
    partial = env_file.with_name(f"{env_file.name}.partial")
    partial.write_text("\n".join([*lines, f"{FSYNC_DELAY_KEY}={delay_ms:g}"]) + "\n")
    partial.replace(env_file)


def main(argv: list[str]) -> int:
    usage = __doc__.strip().splitlines()[-1].strip()
    if len(argv) < 2 or argv[1] not in ("start", "stop", "fsync-delay"):
        print(usage, file=sys.stderr)
        return 2
    root, command = Path(argv[0]), argv[1]
    if command == "fsync-delay":
        try:
            delay_ms = float(argv[2])
        except (IndexError, ValueError):
            delay_ms = -1.0
        if not delay_ms >= 0:
            print(f"fsync-delay needs a number of milliseconds >= 0\n{usage}", file=sys.stderr)
            return 2
        set_fsync_delay(root / "etcd" / "etcd.env", delay_ms)
        return 0
    process = etcd_process(root)
    if command == "start":
        process.start(timeout=60)
    else:
        process.stop(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
