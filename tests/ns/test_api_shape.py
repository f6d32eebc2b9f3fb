"""The REST API's shape: every collection and site reachable whatever its name, bad input a
400 naming the field (never 422), 405 with ``Allow``, and an OpenAPI document that lists
the statuses the API returns. Real NS (and task server) processes; the CLI as a process.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Route

from taskfleet import ns as ns_package
from taskfleet.app import create_app
from taskfleet.ns import agent_openapi
from taskfleet.ns.settings import NSSettings
from tests.cli.test_cli import taskfleet
from tests.fleet import Fleet
from tests.integration.nodes import RawAgent

# Characters a URL gives a meaning to, and a percent-escape that must stay as written.
ODD = "Lab/East ?#frag %2F 100%"
ODD_SITE = "HQ/2 ?x=1#top %41"


def cli_json(fleet: Fleet, *args: str) -> object:
    done = taskfleet(fleet, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_collections_and_sites_with_any_name_work_in_the_api_and_the_cli(fleet: Fleet) -> None:
    # Given a computer, and a collection whose name differs from ODD only by decoding
    assert RawAgent(fleet, "pc-1").enrol(fleet.token("agent")).status_code == 200
    fleet.api.post("/api/collections", {"name": ODD.replace("%2F", "/")})

    # When the admin creates a collection and a site with odd names through the CLI,
    # adds the computer to the collection and a subnet to the site
    assert taskfleet(fleet, "collection", "create", ODD).returncode == 0
    assert taskfleet(fleet, "collection", "add", ODD, "pc-1").returncode == 0
    assert taskfleet(fleet, "site", "create", ODD_SITE, "10.1.0.0/16").returncode == 0
    assert taskfleet(fleet, "site", "add-subnet", ODD_SITE, "10.2.0.0/16").returncode == 0

    # Then the CLI shows each by its exact name, with what was added
    shown = cli_json(fleet, "collection", "show", ODD)
    assert isinstance(shown, dict)
    assert shown["name"] == ODD
    assert [m["name"] for m in shown["members"]] == ["pc-1"]
    sites = cli_json(fleet, "site", "list")
    assert isinstance(sites, list)
    assert [s["subnets"] for s in sites if s["name"] == ODD_SITE] == [
        ["10.1.0.0/16", "10.2.0.0/16"]
    ]

    # And the API finds each by name (a query parameter) and reaches it by id
    (found,) = fleet.api.get("/api/collections", params={"name": ODD})
    assert fleet.api.get(f"/api/collections/{found['id']}")["name"] == ODD
    (other,) = fleet.api.get("/api/collections", params={"name": ODD.replace("%2F", "/")})
    assert (
        other["id"] != found["id"]
        and fleet.api.get(f"/api/collections/{other['id']}")["members"] == []
    )
    (site,) = fleet.api.get("/api/sites", params={"name": ODD_SITE})
    added = fleet.api.post(f"/api/sites/{site['id']}/subnets", {"subnet": "10.3.0.0/16"})
    assert added["name"] == ODD_SITE and "10.3.0.0/16" in added["subnets"]

    # And the audit log names them exactly
    targets = {e["target"] for e in fleet.api.get("/api/audit")}
    assert {ODD, ODD_SITE} <= targets


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bad_input_is_400_naming_the_field_and_405_says_what_is_allowed(fleet: Fleet) -> None:
    client = fleet.api.client
    # When a body field, a path id and a query parameter are of the wrong kind
    cases = [
        ("POST", "/api/collections", {"name": 5}, "name"),
        ("POST", "/api/collections", {"name": "x\u0000y"}, "name"),
        ("POST", "/api/collections", {"name": ""}, "name"),
        ("GET", "/api/collections/abc", None, "collection_id"),
        ("GET", f"/api/sites?name={'n' * 300}", None, "name"),
        ("POST", "/api/runs", {"task": "t", "targets": ["x"] * 10_001}, "targets"),
        ("POST", "/api/tasks", {"name": "t", "script": "echo", "timeout_s": "soon"}, "timeout_s"),
    ]
    for method, path, body, field in cases:
        response = client.request(method, path, json=body)
        # Then each is a 400 (never 422) whose "field" names the input at fault
        assert response.status_code == 400, (path, response.text)
        assert response.json()["field"] == field, (path, response.text)
        assert response.json()["error"] == "invalid_input"

    # When a method a path does not take is used, on the NS and on a task server
    ts = fleet.start_ts("ts-1")
    for url, method, path, allow in [
        (fleet.ns_url, "DELETE", "/api/collections", "GET, POST"),
        (fleet.ns_url, "PUT", "/api/collections/1", "GET"),
        (fleet.ns_url, "GET", "/api/collections/1/members", "POST"),
        (ts.url, "DELETE", "/agent/poll", "GET, HEAD"),
    ]:
        response = httpx.request(method, f"{url}{path}", headers=dict(client.headers))
        # Then it is a 405 whose Allow names every method the path takes
        assert response.status_code == 405, (path, response.text)
        assert response.headers["allow"] == allow, path
        assert allow in response.json()["message"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_openapi_document_lists_the_statuses_the_api_returns(fleet: Fleet) -> None:
    # Given the NS's OpenAPI document
    document = fleet.api.get("/openapi.json")
    operations = {
        (method.upper(), path): set(operation["responses"])
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    # Then no operation says 422, and every error refers to the one error body
    assert not [op for op, codes in operations.items() if "422" in codes]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, methods in document["paths"].items():
        for operation in methods.values():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, code)
    # And each operation lists what its inputs and credential imply, and what it declares
    assert operations[("POST", "/api/collections")] >= {"400", "401", "403", "409", "413"}
    assert operations[("GET", "/api/collections/{collection_id}")] >= {"400", "401", "404"}
    assert operations[("POST", "/api/tasks")] >= {"400", "401", "403", "409", "413"}
    assert operations[("GET", "/api/me")] == {"200", "401", "403"}


# Every module of the NS's API (issues 9 and 10): each reply is described by a model,
# never a bare object. Found by name, so a new module is checked without being listed.
API_MODULES = [
    importlib.import_module(f"taskfleet.ns.{found.name}")
    for found in pkgutil.iter_modules(ns_package.__path__)
    if found.name.startswith("api_")
]


def reply_schema_fault(schema: dict[str, Any], components: dict[str, Any]) -> str | None:
    """Why a reply's JSON schema does not describe it, or None when it does."""
    if schema.get("type") == "array":
        return reply_schema_fault(schema.get("items", {}), components)
    ref = schema.get("$ref", "")
    if not ref.startswith("#/components/schemas/"):
        return f"not a model: {schema}"
    model = components[ref.rsplit("/", 1)[1]]
    return None if model.get("properties") else f"{ref} lists no properties"


def test_every_api_reply_has_a_schema_in_the_openapi_document(tmp_path: Path) -> None:
    # Given the NS app's OpenAPI document
    settings = NSSettings("sqlite://", "127.0.0.1:0", tmp_path, insecure_http=True)
    document = create_app(settings).openapi()
    components = document["components"]["schemas"]
    faults, seen = [], 0
    assert len(API_MODULES) >= 17  # the modules were found
    for module in API_MODULES:
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            if not route.include_in_schema:  # (only /api/ts/refusals, a task server's report)
                continue
            for method in route.methods or ():
                operation = document["paths"][route.path_format][method.lower()]
                for code, response in operation["responses"].items():
                    if not code.startswith("2") or code == "204":
                        continue
                    seen += 1
                    # Then each success reply says what it holds: JSON by a model
                    # (or a list of one), text and bytes by a schema of their own
                    for media, body in response.get("content", {"none": {}}).items():
                        schema = body.get("schema", {})
                        if media == "application/json":
                            fault = reply_schema_fault(schema, components)
                        else:
                            fault = None if schema else f"{media} without a schema"
                        if fault:
                            faults.append(f"{method} {route.path_format} {code}: {fault}")
    assert seen > 70  # the modules' routes were found
    assert not faults, "\n".join(faults)


def test_the_agents_plain_routes_are_in_the_openapi_document(tmp_path: Path) -> None:
    # Given the NS app (it serves agents itself, R3) and its OpenAPI document
    settings = NSSettings("sqlite://", "127.0.0.1:0", tmp_path, insecure_http=True)
    app = create_app(settings)
    document = app.openapi()
    # When the plain Starlette routes agents call are listed (no FastAPI description)
    plain = {
        (method, route.path_format): route.original_route
        for route in iter_route_contexts(list(app.routes))
        if not isinstance(route.original_route, APIRoute)
        and (route.path_format or "").startswith("/agent/")
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert set(plain) == {
        ("GET", "/agent/poll"),
        ("GET", "/agent/channel"),
        ("POST", "/agent/status"),
        ("GET", "/agent/files/{sha256}"),
    }
    # Then each is in the document, with its request and reply by the protocol's types
    for method, path in plain:
        operation = document["paths"][path][method.lower()]
        assert {"401", "403", "409", "503"} <= set(operation["responses"]), path
        names = [p["name"] for p in operation.get("parameters", [])]
        assert "Authorization" in names, path

    def reply(method: str, path: str) -> dict[str, Any]:
        content: dict[str, Any] = document["paths"][path][method]["responses"]["200"]["content"]
        return content

    ref = "#/components/schemas/"
    assert reply("get", "/agent/poll")["application/json"]["schema"] == {"$ref": ref + "PollReply"}
    channel = reply("get", "/agent/channel")["application/json"]["schema"]
    assert channel == {"$ref": ref + "ChannelReply"}
    status = document["paths"]["/agent/status"]["post"]
    assert status["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": ref + "StatusBatch"
    }
    assert reply("post", "/agent/status")["application/json"]["schema"] == {
        "$ref": ref + "StatusAck"
    }
    assert "application/octet-stream" in reply("get", "/agent/files/{sha256}")
    for name in ("PollReply", "ChannelReply", "StatusBatch", "StatusEvent", "WorkItem"):
        assert document["components"]["schemas"][name]["properties"], name
    # And the limits it states are the endpoints' own
    channel_route, files_route = (
        plain[("GET", "/agent/channel")],
        plain[("GET", "/agent/files/{sha256}")],
    )
    assert isinstance(channel_route, Route) and isinstance(files_route, Route)
    channel_module = sys.modules[channel_route.endpoint.__module__]
    files_module = sys.modules[files_route.endpoint.__module__]
    assert agent_openapi.MAX_WAIT_S == channel_module.MAX_WAIT_S
    assert agent_openapi.DEFAULT_WAIT_S == channel_module.DEFAULT_WAIT_S
    assert channel_module.MAX_EVENTS_PER_BATCH == 1000  # as the status operation says
    assert agent_openapi.SHA256_HEADER == files_module.SHA256_HEADER
