"""Fuzz of the whole HTTP API from its OpenAPI schema with schemathesis, on a live server.

For every operation in the schema, schemathesis draws requests that fit the schema
(positive) and requests that break it (negative). Each response must not be a 5xx, must
have a documented status code and content type and must match the documented schema;
negative requests must be rejected with a 4xx. Requests that fit the schema can still
break the server's rules between fields or its limits, so a 2xx is not required.

schemathesis 4.32's pytest plugin (``schema.parametrize``) fails under pytest 9 because it
reads ``request.node._nodeid``, which pytest 9 no longer has. So the operations are
parametrized here, and each test draws cases from schemathesis's own strategy for its
operation with ``hypothesis.given``.

The server gets one run slot and a cancel grace of 0.2 s, and after every successful
state-changing request each queued or running run is cancelled: a queued run ends
without starting and a started one within the grace period, so the fuzz never keeps the
machine busy with training. Path parameters are sometimes the id of a completed run, so
that the run endpoints and ``predict`` are fuzzed against a real run and checkpoint.
"""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from server_helpers import FINISHED, RunsClient

from app.main import create_app
from app.settings import Settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
FUZZ_SERVER_ENV = {"RELMEM_CANCEL_GRACE_SECONDS": "0.2"}
MAX_EXAMPLES = 20
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def operation_modes() -> list[tuple[str, GenerationMode]]:
    """Return (operation label, mode) for every operation of the schema that create_app builds.

    The live server serves the same schema. Negative cases need a body or a query
    parameter to break: an unconstrained string in the path cannot be made invalid.
    """
    pairs = []
    for path, methods in create_app(Settings()).openapi()["paths"].items():
        for method, operation in methods.items():
            label = f"{method.upper()} {path}"
            pairs.append((label, GenerationMode.POSITIVE))
            parameters = operation.get("parameters", [])
            if "requestBody" in operation or any(p["in"] == "query" for p in parameters):
                pairs.append((label, GenerationMode.NEGATIVE))
    return pairs


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, start_live_server):
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    with start_live_server(data_dir, max_concurrent_runs=1, extra_env=FUZZ_SERVER_ENV) as server:
        yield server


@pytest.fixture(scope="module")
def completed_run(fuzz_server, tiny_run_request) -> dict:
    runs = RunsClient(fuzz_server)
    run = runs.wait_for(runs.create(tiny_run_request("lstm"))["id"])
    runs.http.close()
    assert run["status"] == "completed", run["error"]
    return run


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


def case_strategy(schema, label: str, mode: GenerationMode, run_id: str):
    operation = schema.find_operation_by_label(label)
    drawn = operation.as_strategy(generation_mode=mode)
    path_parameters = {"run_id": run_id}
    if "{run_id}" not in operation.path or operation.method.upper() == "DELETE":
        # Deleting the completed run would leave the other operations without it.
        return drawn
    return st.one_of(
        drawn, operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
    )


def cancel_active_runs(client: httpx.Client) -> None:
    for run in client.get("/api/runs").json():
        if run["status"] not in FINISHED:
            client.post(f"/api/runs/{run['id']}/cancel")


@pytest.mark.parametrize(("label", "mode"), operation_modes())
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_operation_matches_schema(fuzz_server, fuzz_schema, completed_run, label, mode, data):
    case = data.draw(case_strategy(fuzz_schema, label, mode, completed_run["id"]))
    response = case.call(base_url=fuzz_server.url, timeout=30)
    try:
        case.validate_response(response, checks=CHECKS)
    finally:
        if case.method.upper() not in SAFE_METHODS and response.status_code < 300:
            with fuzz_server.client() as client:
                cancel_active_runs(client)
