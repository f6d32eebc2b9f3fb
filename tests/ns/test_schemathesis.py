"""Every operation of the NS's OpenAPI document, with generated input: never a 5xx.

Schemathesis reads the document a real NS serves (on SQLite and on PostgreSQL) and
generates requests for each operation, inputs that fit its schema and inputs that do
not, sent as an admin. Each answer must not be a server error, and its status must be
one the document lists for the operation (so the document says what the API returns).

Bounded: ``MAX_EXAMPLES`` per operation and kind of input (environment variable
``TASKFLEET_SCHEMATHESIS_EXAMPLES``, 10 by default), no shrinking (a failure is
reported with the request that caused it, as a curl command). The two user operations
that could take the admin's own rights away (role, disable) and the password change
are sent to a user made for that, so the rest of the run stays authenticated.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode, openapi
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance
from urllib3.exceptions import InsecureRequestWarning

from tests.fleet import Fleet

# Per operation and kind of input; raise it for a deeper run (a few minutes per 100).
MAX_EXAMPLES = int(os.environ.get("TASKFLEET_SCHEMATHESIS_EXAMPLES", "10"))
CHECKS = [not_a_server_error, status_code_conformance]
VICTIM = "schemathesis-target"
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# About 100 operations x 2 kinds of input: minutes on a loaded 2-core machine.
# Bad input meets each store's own column types and limits (NUL, integer sizes): both run it.
pytestmark = [pytest.mark.timeout(600), pytest.mark.both_stores]


def run_operation(
    operation: Any,
    mode: GenerationMode,
    call: dict[str, Any],
    failures: dict[str, str],
    answered: Counter[tuple[str, int]],
) -> None:
    fixed = {"key": VICTIM} if operation.path.startswith("/api/users/{key}") else None

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure is reported
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    def check(case: Case) -> None:
        response = case.call(**call)
        answered[(f"{operation.method.upper()} {operation.path}", response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=call["headers"])
        except (Exception, BaseExceptionGroup) as exc:  # each is recorded; the run goes on
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            what = lines[1] if len(lines) > 1 else repr(exc)  # the first line counts them
            key = f"{operation.method.upper()} {operation.path}: {response.status_code} {what}"
            # One example of each kind of failure: the request, and what the NS said.
            failures.setdefault(
                key, f"{case.as_curl_command(verify=False)[:600]}\n    -> {response.text[:300]}"
            )

    try:
        check()
    except Unsatisfiable:  # an operation without inputs: there is nothing invalid to send
        assert mode is GenerationMode.NEGATIVE


def test_every_operation_with_generated_input_gets_no_server_error(fleet: Fleet) -> None:
    # Given the NS's OpenAPI document, an admin, and a user the user operations act on
    document = fleet.api.get("/openapi.json")
    fleet.api.post("/api/users", {"name": VICTIM, "role": "viewer"})
    schema = openapi.from_dict(document)
    session = requests.Session()
    call = {
        "base_url": fleet.ns_url,
        "session": session,
        "headers": {"Authorization": fleet.api.client.headers["authorization"]},
        "timeout": 30,
        "verify": False,  # a CA rotation among the operations changes the server's chain
    }
    failures: dict[str, str] = {}
    answered: Counter[tuple[str, int]] = Counter()
    operations = 0
    # When every operation gets generated requests, valid and invalid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            for mode in MODES:
                run_operation(operation, mode, call, failures, answered)
    session.close()

    # Then none was answered with a server error or a status the document does not list
    assert operations == sum(len(methods) for methods in document["paths"].values())
    shown = "\n".join(f"{key}\n    {example}" for key, example in sorted(failures.items()))
    assert not failures, f"{len(failures)} kinds of failure:\n{shown}"
    # And the run reached the operations as an admin: most took some generated request
    # (the others need another kind of credential, or a task server, agent or run)
    accepted = {op for (op, status), _ in answered.items() if status < 300}
    tally = "\n".join(f"{op}: {status} x{n}" for (op, status), n in sorted(answered.items()))
    assert len(accepted) >= operations // 3, f"answers:\n{tally}"
    assert fleet.api.get("/api/me")["role"] == "admin"
