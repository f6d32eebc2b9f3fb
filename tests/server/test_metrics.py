"""The request counter: labels are route templates, methods and codes from a bounded set."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from taskfleet.server import errors
from taskfleet.server.metrics import ServerMetrics, count_requests
from tests.scrape import Scrape


def build(tmp_path: Path) -> tuple[FastAPI, ServerMetrics]:
    metrics = ServerMetrics("taskfleet_test", durations=True)
    app = FastAPI()
    plain = APIRouter()

    async def poll(request: Request) -> Response:
        return PlainTextResponse("nothing new")

    plain.add_route("/agent/poll", poll, methods=["GET"])  # as the task server's hot paths
    api = APIRouter(prefix="/api")

    @api.get("/runs/{run_id}")
    async def run(run_id: int) -> dict[str, int]:
        return {"id": run_id}

    @api.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    app.include_router(plain)
    app.include_router(api)
    (tmp_path / "app.css").write_text("body {}")
    app.mount("/static", StaticFiles(directory=tmp_path), name="static")
    errors.install(app)
    count_requests(app, metrics)
    return app, metrics


def read(metrics: ServerMetrics) -> Scrape:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(metrics.registry).decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return Scrape(text, samples)


async def test_requests_are_counted_by_template_method_and_code(tmp_path: Path) -> None:
    app, metrics = build(tmp_path)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ts") as client:
        for n in range(3):
            assert (await client.get(f"/api/runs/{n + 101}")).status_code == 200
        assert (await client.get("/agent/poll")).status_code == 200
        assert (await client.post("/agent/poll")).status_code == 405
        assert (await client.get("/static/app.css")).status_code == 200
        assert (await client.get("/no/such/path/555")).status_code == 404
        assert (await client.request("BREW", "/agent/poll")).status_code == 405
        assert (await client.get("/api/broken")).status_code == 500

    found = read(metrics)
    requests = "taskfleet_test_requests_total"
    assert found.value(requests, method="GET", route="/api/runs/{run_id}", code="200") == 3
    assert found.value(requests, method="GET", route="/agent/poll", code="200") == 1
    assert found.value(requests, method="POST", route="/agent/poll", code="405") == 1
    assert found.value(requests, method="GET", route="/static/{path}", code="200") == 1
    assert found.value(requests, method="GET", route="other", code="404") == 1
    assert found.value(requests, method="other", route="/agent/poll", code="405") == 1
    assert found.value(requests, method="GET", route="/api/broken", code="500") == 1
    # No raw path, and so no id, ever becomes a label
    labels = " ".join(line.split("}")[0] for line in found.text.splitlines() if "{" in line)
    for raw in ("101", "555", "app.css", "BREW"):
        assert raw not in labels  # (values, such as the start time, may hold any digits)
    duration = "taskfleet_test_request_duration_seconds_count"
    assert found.value(duration, method="GET", route="/api/runs/{run_id}") == 3


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    # Two servers in one process (as in tests) register the same names without colliding
    first, second = ServerMetrics("taskfleet_ts", False), ServerMetrics("taskfleet_ts", False)
    first.request_counts[("/hello", "GET", 200)] = 1
    hello = {"method": "GET", "route": "/hello", "code": "200"}
    assert read(first).value("taskfleet_ts_requests_total", **hello) == 1
    assert read(second).get("taskfleet_ts_requests_total", **hello) == 0
