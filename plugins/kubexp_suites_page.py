"""Airflow plugin: a "kubexp suites" page in the UI with per-scenario progress and links to reports.

Airflow 3 plugins add pages as FastAPI apps mounted on the api-server (`fastapi_apps`) and show
them in the UI through `external_views`; with a `url_route` the page is embedded in the UI's frame.
The page needs a logged-in user (the UI's `_token` cookie or a bearer token), like the REST API.
"""

from __future__ import annotations

from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from kubexp.orchestration import progress

URL_PREFIX = "/kubexp"

app = FastAPI(title="kubexp suites", dependencies=[Depends(requires_authenticated())])


# Plain (not async) handlers: FastAPI runs them in its thread pool, so store queries never block the loop.
@app.get("/", response_class=HTMLResponse)
def suites_page() -> str:
    return progress.render_page(progress.all_suites())


@app.get("/api/suites")
def suites_json() -> list[dict]:
    return [entry.to_json() for entry in progress.all_suites()]


@app.get("/reports/{suite_name}")
def report(suite_name: str) -> FileResponse:
    path = progress.report_path(suite_name)
    if path is None or not path.is_file():
        raise HTTPException(404, f"no report for suite {suite_name!r} yet; build one with the button on the "
                                 f"suites page or `kubexp report {suite_name}`")
    return FileResponse(path, media_type="text/html")


@app.post("/reports/{suite_name}")
def build_report(suite_name: str) -> RedirectResponse:
    try:
        progress.build_report(suite_name)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc
    return RedirectResponse(suite_name, status_code=303)  # relative: …/kubexp/reports/<suite>


class KubexpSuitesPlugin(AirflowPlugin):
    name = "kubexp"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "kubexp suites"}]
    external_views = [{
        "name": "kubexp suites",
        "href": "kubexp/",  # relative: works behind a reverse proxy with a path prefix
        "destination": "nav",
        "url_route": "kubexp-suites",
        "category": "browse",
    }]
