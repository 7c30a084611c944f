"""Fuzz the HTTP API from its own OpenAPI document: whatever is sent, never a 5xx.

Each operation's cases come from schemathesis' strategies for it (paths, headers, query and
bodies drawn from the schema, and in negative mode violating it), driven by hypothesis. The
number of cases is fixed per operation, so the run is bounded: the key-value operations, whose
inputs are rich, get most of them; operations without parameters get a few.
"""

from __future__ import annotations

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from proxy_double import ChainDouble
from proxy_harness import running_proxy
from schemathesis.generation import GenerationMode

KEY_VALUE_EXAMPLES = 20  # per key-value operation and mode
OTHER_EXAMPLES = 3  # per parameterless operation and mode: the same request each time
KEY_VALUE_OPERATIONS = {"PUT /v1/kv/{key}", "GET /v1/kv/{key}", "HEAD /v1/kv/{key}", "DELETE /v1/kv/{key}"}


def test_no_request_gets_a_server_error():
    with ChainDouble(members=3) as chain, running_proxy(chain) as proxy, requests.Session() as session:
        schema = schemathesis.openapi.from_url(f"{proxy.url}/openapi.json")
        # A watch is a stream that never ends by itself: its bad inputs have scenarios of their own.
        operations = [result.ok() for result in schema.get_all_operations() if result.ok().label != "GET /v1/watch"]
        assert {op.label for op in operations} >= KEY_VALUE_OPERATIONS | {"GET /v1/cluster", "GET /v1/kv", "POST /v1/txn"}
        statuses: set[int] = set()
        for operation in operations:
            examples = KEY_VALUE_EXAMPLES if operation.label in KEY_VALUE_OPERATIONS else OTHER_EXAMPLES
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
                def fuzz(case) -> None:
                    response = case.call(base_url=proxy.url, session=session, timeout=10)
                    statuses.add(response.status_code)
                    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
                    if response.status_code >= 400 and case.method != "HEAD":  # HEAD: never a body
                        assert set(response.json()) >= {"error", "message"}, response.text

                try:
                    fuzz()
                except Unsatisfiable:
                    # Only negative mode: an operation whose every input is valid has no bad case.
                    assert mode is GenerationMode.NEGATIVE, operation.label
        assert {200, 400, 404} <= statuses, "the fuzzer reached both success and refusal paths"
