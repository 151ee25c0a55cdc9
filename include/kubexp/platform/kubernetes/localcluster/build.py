"""Binaries and images of the local cluster, built from the registries and cached by version.

Go binaries come from the wrapper modules in include/kube-build/ (Kubernetes' own packages, version
stamped the way Kubernetes' release build stamps them); the pause binary from pause.c in the
k8s.io/kubernetes module; the app image from app/ on a Debian root file system (debootstrap from
the machine's own apt source) with the app's pinned wheels. Images are OCI layouts (a tar of
index.json, blobs and oci-layout) that `ctr images import` takes without any registry.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kubexp import settings

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.16"
METRICS_SERVER_VERSION = "v0.8.0"
PAUSE_VERSION = "3.10.1"  # the tag build/pause/Makefile gives pause.c in this Kubernetes release
GO_MODULES = settings.REPO_ROOT / "include" / "kube-build"
KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl")
BINARIES = (*KUBE_BINARIES, "etcd", "etcdctl", "metrics-server", "pause")
PAUSE_IMAGE = f"registry.k8s.io/pause:{PAUSE_VERSION}"
METRICS_SERVER_IMAGE = f"registry.k8s.io/metrics-server/metrics-server:{METRICS_SERVER_VERSION}"
APP_USER_ID = 10001


class BuildError(RuntimeError):
    """A build step failed; the message names the step, the command and what to do."""


def cache_root() -> Path:
    """Where builds are kept across checkouts (KUBEXP_CACHE_DIR, else ~/.cache/kubexp)."""
    if os.environ.get("KUBEXP_CACHE_DIR"):
        return Path(os.environ["KUBEXP_CACHE_DIR"]).resolve()
    return (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kubexp").resolve()


def binaries_dir() -> Path:
    return cache_root() / f"kubernetes-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_metrics-server-{METRICS_SERVER_VERSION}"


def _version_ldflags(version: str) -> str:
    """-X flags for the two packages whose version Kubernetes' release build stamps."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.gitVersion={version}", f"-X {package}.gitMajor={major}",
                  f"-X {package}.gitMinor={minor}", f"-X {package}.gitTreeState=clean",
                  f"-X {package}.buildDate=1970-01-01T00:00:00Z"]
    return " ".join(flags)


def _run(argv: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    except FileNotFoundError:
        raise BuildError(f"{what}: program {argv[0]!r} not found; run `make setup`") from None
    if done.returncode != 0:
        raise BuildError(f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n{done.stderr[-3000:]}")
    return done.stdout


def build_binaries(log: Callable[[str], None] = print) -> Path:
    """The cached bin/ folder with every binary of the cluster; builds what is missing."""
    target = binaries_dir() / "bin"
    if all((target / name).is_file() for name in BINARIES):
        return target
    go = shutil.which("go")
    if go is None:
        raise BuildError("building the local cluster needs Go (>= 1.24) on PATH; install it and rerun")
    work = Path(tempfile.mkdtemp(prefix="bin-", dir=binaries_dir().parent if binaries_dir().parent.exists()
                                 else _mkdir(cache_root())))
    env = {"CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    started = time.monotonic()
    steps = [("kubernetes", KUBERNETES_VERSION, _version_ldflags(KUBERNETES_VERSION)),
             ("etcd", ETCD_VERSION, "-s -w"), ("metrics-server", METRICS_SERVER_VERSION, "-s -w")]
    for module, version, ldflags in steps:
        log(f"cluster build: {module} {version} from Go modules (cold: tens of minutes on 2 cores) ...")
        step_started = time.monotonic()
        _run([go, "build", "-trimpath", "-ldflags", ldflags, "-o", f"{work}/", "tool"],
             f"go build of {module}", cwd=GO_MODULES / module, env=env)
        log(f"cluster build: {module} done in {time.monotonic() - step_started:.0f} s")
    (work / "server").rename(work / "etcd")  # go names etcd's binary after its package path, .../server/v3
    _build_pause(go, work / "pause")
    missing = [name for name in BINARIES if not (work / name).is_file()]
    if missing:
        raise BuildError(f"the cluster build produced no {', '.join(missing)} in {work}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)
    size = sum(path.stat().st_size for path in target.iterdir())
    log(f"cluster build: {len(BINARIES)} binaries, {size / 2**20:.0f} MiB, in {time.monotonic() - started:.0f} s "
        f"-> {target}")
    return target


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _build_pause(go: str, out: Path) -> None:
    """pause.c of the pinned Kubernetes module, compiled static."""
    source_dir = _run([go, "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"],
                      "locating the k8s.io/kubernetes module", cwd=GO_MODULES / "kubernetes").strip()
    source = Path(source_dir) / "build" / "pause" / "linux" / "pause.c"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise BuildError("building the pause binary needs a C compiler (Debian package gcc)")
    _run([cc, "-Os", "-static", "-Wall", f'-DVERSION=v{PAUSE_VERSION}-kubexp', "-o", str(out), str(source)],
         "compiling pause.c")


# --- OCI images -----------------------------------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer_from_dir(rootfs: Path) -> Path:
    """An uncompressed layer tar of `rootfs` (owned by root, device files and mount points' contents left out)."""
    layer = Path(tempfile.mkstemp(prefix="layer-", suffix=".tar", dir=rootfs.parent)[1])
    skip = {"dev", "proc", "sys"}
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(rootfs.iterdir()):
            if entry.name in skip:
                tar.add(entry, arcname=entry.name, recursive=False)
                continue
            tar.add(entry, arcname=entry.name, filter=_root_owned)
    return layer


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if info.ischr() or info.isblk() or info.isfifo():
        return None
    if info.uid != APP_USER_ID:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
    return info


def write_oci_image(rootfs: Path, out: Path, name: str, config: dict[str, Any]) -> Path:
    """An OCI image layout tar at `out` holding one layer made of `rootfs`, named `name`."""
    layer = _layer_from_dir(rootfs)
    try:
        digest = hashlib.sha256()
        with open(layer, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        layer_digest, layer_size = "sha256:" + digest.hexdigest(), layer.stat().st_size
        image_config = json.dumps({
            "architecture": "amd64", "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }, sort_keys=True).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _sha256(image_config),
                       "size": len(image_config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                        "size": layer_size}],
        }, sort_keys=True).encode()
        index = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _sha256(manifest),
                           "size": len(manifest),
                           "annotations": {"io.containerd.image.name": name,
                                           "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}],
        }, sort_keys=True).encode()
        partial = out.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            for member, data in (("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'), ("index.json", index),
                                 (f"blobs/sha256/{_sha256(manifest)[7:]}", manifest),
                                 (f"blobs/sha256/{_sha256(image_config)[7:]}", image_config)):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            tar.add(layer, arcname=f"blobs/sha256/{layer_digest[7:]}")
        partial.rename(out)
    finally:
        layer.unlink(missing_ok=True)
    return out


def _static_image(binary: Path, out: Path, name: str, config: dict[str, Any]) -> Path:
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        (rootfs / "tmp").mkdir(parents=True)
        (rootfs / "tmp").chmod(0o1777)
        shutil.copy2(binary, rootfs / binary.name)
        return write_oci_image(rootfs, out, name, config)


def pause_image(bin_dir: Path) -> Path:
    out = bin_dir.parent / f"pause-{PAUSE_VERSION}.oci.tar"
    if not out.exists():
        _static_image(bin_dir / "pause", out, PAUSE_IMAGE, {"Entrypoint": ["/pause"], "User": "65535:65535"})
    return out


def metrics_server_image(bin_dir: Path) -> Path:
    out = bin_dir.parent / f"metrics-server-{METRICS_SERVER_VERSION}.oci.tar"
    if not out.exists():
        _static_image(bin_dir / "metrics-server", out, METRICS_SERVER_IMAGE, {"Entrypoint": ["/metrics-server"]})
    return out


def _app_inputs() -> Iterable[Path]:
    app = settings.APP_DIR
    for path in sorted(app.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def app_image_key() -> str:
    """Digest of everything the app image is made of: app/ and this module."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in _app_inputs():
        digest.update(str(path.relative_to(settings.APP_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def debian_codename() -> str:
    text = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=(\S+)$", text, re.M)
    if not match:
        raise BuildError("/etc/os-release has no VERSION_CODENAME: the app image is built on Debian or Ubuntu")
    return match.group(1).strip('"')


def apt_mirror(codename: str) -> str:
    """The first apt source of this machine that serves `codename` (deb822 or one-line format)."""
    found: list[str] = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if "deb" in fields.get("Types", "").split() and codename in fields.get("Suites", "").split():
                    found += fields.get("URIs", "").split()
        else:
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == codename:
                    found.append(next(p for p in parts[1:] if not p.startswith("[")))
    if not found:
        raise BuildError(f"no apt source for {codename!r} in /etc/apt/sources.list(.d): the app image's root file "
                         f"system is made with debootstrap from the machine's own Debian source")
    return found[0]


def _debian_rootfs(cache: Path, debootstrap: str, log: Callable[[str], None]) -> Path:
    """A minimal Debian of this machine's release with python3, made once and kept in the cache."""
    codename = debian_codename()
    rootfs = cache / f"debian-{codename}-python3"
    if (rootfs / "usr/bin/python3").exists():
        return rootfs
    partial = cache / f"debian-{codename}-python3.partial"
    shutil.rmtree(partial, ignore_errors=True)
    log(f"cluster build: app image: debootstrap {codename} (minbase + python3) ...")
    _run([debootstrap, "--variant=minbase", "--include=python3", codename, str(partial), apt_mirror(codename)],
         "debootstrap of the app image's root file system")
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
                 "usr/share/locale"):
        shutil.rmtree(partial / junk, ignore_errors=True)
    partial.rename(rootfs)
    return rootfs


def app_image(bin_dir: Path, name: str, log: Callable[[str], None] = print) -> Path:
    """The app image (app/, same code and entry point as app/Dockerfile), cached by its inputs."""
    out = bin_dir.parent / f"app-{app_image_key()}.oci.tar"
    if out.exists():
        return out
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise BuildError("building the app image needs debootstrap (Debian package debootstrap); run `make setup`")
    started = time.monotonic()
    base = _debian_rootfs(out.parent, debootstrap, log)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(["cp", "-a", str(base), str(rootfs)], "copying the Debian root file system")
        python = os.readlink(rootfs / "usr/bin/python3")  # python3.11
        version = python.removeprefix("python3.")
        srv = rootfs / "srv/cropapp"
        site = srv / "site-packages"
        log(f"cluster build: app image: wheels of app/requirements.txt for CPython 3.{version} ...")
        glibc_minor = int((os.confstr("CS_GNU_LIBC_VERSION") or "glibc 2.17").split(".")[1])  # this machine's release
        platforms = [arg for minor in range(glibc_minor, 16, -1)
                     for arg in ("--platform", f"manylinux_2_{minor}_x86_64")]
        _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
              "--only-binary=:all:", *platforms, "--platform", "manylinux2014_x86_64", "--python-version",
              f"3.{version}", "--implementation", "cp", "--target", str(site),
              "-r", str(settings.APP_DIR / "requirements.txt")],
             "pip install of the app's requirements into the image")
        shutil.copy2(settings.APP_DIR / "gunicorn.conf.py", srv / "gunicorn.conf.py")
        shutil.copytree(settings.APP_DIR / "cropapp", srv / "cropapp",
                        ignore=shutil.ignore_patterns("__pycache__"))
        # The bundled images are generated as the Dockerfile does, with the image's own Python and Pillow.
        _run(["chroot", str(rootfs), "/usr/bin/env", "PYTHONPATH=/srv/cropapp/site-packages:/srv/cropapp",
              f"/usr/bin/python3.{version}", "-m", "cropapp.images", "/srv/cropapp/images"],
             "generating the app's bundled images inside the image")
        with open(rootfs / "etc/passwd", "a") as passwd:
            passwd.write(f"cropapp:x:{APP_USER_ID}:{APP_USER_ID}::/nonexistent:/usr/sbin/nologin\n")
        with open(rootfs / "etc/group", "a") as group:
            group.write(f"cropapp:x:{APP_USER_ID}:\n")
        env = ["PATH=/srv/cropapp/site-packages/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "PYTHONPATH=/srv/cropapp/site-packages", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1",
               "CROPAPP_IMAGE_DIR=/srv/cropapp/images", "PROMETHEUS_MULTIPROC_DIR=/tmp/cropapp-metrics",
               "MALLOC_ARENA_MAX=1", "CROPAPP_HOST=0.0.0.0", "CROPAPP_PORT=8000"]
        # As app/Dockerfile: cropapp.serve starts the server CROPAPP_SERVER names (the manifests set it).
        write_oci_image(rootfs, out, name, {
            "Entrypoint": [f"/usr/bin/python3.{version}", "-m", "cropapp.serve"],
            "Env": env, "WorkingDir": "/srv/cropapp", "User": str(APP_USER_ID), "ExposedPorts": {"8000/tcp": {}},
        })
    log(f"cluster build: app image {name}: {out.stat().st_size / 2**20:.0f} MiB in {time.monotonic() - started:.0f} s")
    return out
