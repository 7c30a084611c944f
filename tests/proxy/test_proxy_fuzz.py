"""Fuzz the HTTP API from its own OpenAPI document: whatever is sent, never a 5xx.

Each operation's cases come from schemathesis' strategies for it (paths, headers, query and
bodies drawn from the schema, and in negative mode violating it), driven by hypothesis.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from proxy_double import ChainDouble
from proxy_harness import running_proxy
from schemathesis.generation import GenerationMode

EXAMPLES = 30  # per operation and mode: a few seconds in all


def test_no_request_gets_a_server_error():
    with ChainDouble(members=3) as chain, running_proxy(chain) as proxy:
        schema = schemathesis.openapi.from_url(f"{proxy.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.label for op in operations} >= {
            "PUT /v1/kv/{key}",
            "GET /v1/kv/{key}",
            "DELETE /v1/kv/{key}",
            "HEAD /v1/kv/{key}",
        }
        statuses: set[int] = set()
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
                def fuzz(case) -> None:
                    response = case.call(base_url=proxy.url, timeout=10)
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
