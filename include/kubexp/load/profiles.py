"""Load profiles (`load.profile` in a suite): what each request asks for, and how JMeter sends it.

`kubexp` is this project's own closed loop (exponential think time, keep-alive, a 400x300 crop of a
large image under gunicorn). `paper` is the traffic of the paper's authors as their public scripts
ran it (llarsson/etcd-performance-issues-experiment-framework: fetch-rectangle.jmx, run-experiment.sh;
llarsson/etcd-performance-issues-application: backend.py, k8s/generic/deployment.yml): JMeter's
PoissonRandomTimer (offset 0 ms, lambda = think time), keep-alive off, 1 s ramp-up, connect timeout
2000 ms, no response timeout, a 30x30 crop at (0,0) of a photo-sized image, Flask's own threaded
server, probes on /images and 60 s between the sanity request and the load. docs/load.md sets the two
side by side.

A profile gives defaults only: `load.plan`, `load.request_path`, `load.settle_s` and the platform
sections' `app_server` / `probe_path` override them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubexp.settings import REPO_ROOT

if TYPE_CHECKING:
    from kubexp.suite import LoadSection

PLANS_DIR = REPO_ROOT / "include" / "jmeter"
OPEN_LOOP_PLAN = PLANS_DIR / "open-loop.jmx"
APP_SERVERS = ("gunicorn", "flask")
# The bundled image the paper profile crops: 800x600 like the authors' photos (their convert_images.py
# scales every photo to 800 px wide), and their request (fetch-rectangle.jmx: left=0 top=0 right=30
# bottom=30).
PAPER_IMAGE = "photo.png"
PAPER_CROP_PATH = f"/{PAPER_IMAGE}?left=0&top=0&right=30&bottom=30"
# kubexp's request: a 400x300 crop out of the middle of the 2000x1500 image (full decode, ~14 MiB live).
KUBEXP_CROP_PATH = "/landscape.png?left=800&top=600&right=1200&bottom=900"


class ProfileError(ValueError):
    """A load profile name or setting that does not exist; the message names the key."""


@dataclass(frozen=True)
class LoadProfile:
    name: str
    plan: Path  # the closed-loop JMeter plan (an open-loop scenario uses open-loop.jmx whatever the profile)
    request_path: str  # path and query of every request
    settle_s: int  # seconds between the sanity request (rollout ready) and the load
    app_server: str  # how the app is served unless the platform section says otherwise
    probe_path: str  # readiness and liveness probe (and the local platform's health check) path
    summary: str


PROFILES: dict[str, LoadProfile] = {
    "kubexp": LoadProfile(
        name="kubexp", plan=PLANS_DIR / "closed-loop.jmx", request_path=KUBEXP_CROP_PATH, settle_s=0,
        app_server="gunicorn", probe_path="/healthz",
        summary="exponential think time, keep-alive on, 400x300 crop of a 2000x1500 image, gunicorn"),
    "paper": LoadProfile(
        name="paper", plan=PLANS_DIR / "paper-closed-loop.jmx", request_path=PAPER_CROP_PATH, settle_s=60,
        app_server="flask", probe_path="/images",
        summary="PoissonRandomTimer (offset 0, lambda = think time), keep-alive off, 1 s ramp-up, "
                "30x30 crop at (0,0) of an 800x600 photo, Flask's threaded server, 60 s settle"),
}


def profile_of(load: LoadSection) -> LoadProfile:
    """The profile a suite's `load` section names (default `kubexp`)."""
    name = load.profile
    if name not in PROFILES:
        raise ProfileError(f"load.profile={name!r} is not a load profile; allowed: {', '.join(PROFILES)}")
    return PROFILES[name]


def plan_for(load: LoadSection, params: Mapping[str, Any]) -> Path:
    """The JMeter plan the load step runs: load.plan, else open-loop.jmx for an arrival rate, else the profile's."""
    if load.plan:
        return Path(load.plan)
    if params.get("arrival_rate_per_s") is not None:
        return OPEN_LOOP_PLAN
    return profile_of(load).plan


def request_path_for(load: LoadSection) -> str:
    return load.request_path or profile_of(load).request_path


def settle_s_for(load: LoadSection) -> int:
    return profile_of(load).settle_s if load.settle_s is None else load.settle_s


def app_settings(section: Mapping[str, Any], load: LoadSection) -> dict[str, Any]:
    """A platform section (`local:` or `kubernetes:`) with the profile's app server and probe path as defaults."""
    profile = profile_of(load)
    merged = {"app_server": profile.app_server, "probe_path": profile.probe_path, **section}
    if merged["app_server"] not in APP_SERVERS:
        raise ProfileError(f"app_server={merged['app_server']!r}; allowed: {', '.join(APP_SERVERS)}")
    if not str(merged["probe_path"]).startswith("/"):
        raise ProfileError(f"probe_path={merged['probe_path']!r} must start with /")
    return merged
