"""The upload API against its OpenAPI document (api/openapi.yaml): generated requests, checked responses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.generation.case import Case

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(ROOT / "api" / "openapi.yaml")
AUTH = {"Authorization": "Bearer local-dev"}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@SCHEMA.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_the_api_answers_as_its_document_says(case: Case, api_url: str) -> None:
    case.call_and_validate(base_url=api_url, checks=CHECKS)


def test_a_granted_upload_and_its_status_match_the_document(api_url: str) -> None:
    body: dict[str, Any] = {
        "filename": "doc.png",
        "content_type": "image/png",
        "size": 10,
        "styles": ["pencil", "oil"],
    }
    anonymous = requests.post(f"{api_url}/uploads", json=body, timeout=30)
    assert anonymous.status_code == 401
    SCHEMA["/uploads"]["POST"].validate_response(anonymous)
    granted = requests.post(f"{api_url}/uploads", json=body, headers=AUTH, timeout=30)
    assert granted.status_code == 201
    SCHEMA["/uploads"]["POST"].validate_response(granted)
    status = requests.get(f"{api_url}/images/{granted.json()['image_id']}", headers=AUTH, timeout=30)
    assert status.status_code == 200 and status.json()["state"] == "awaiting_upload"
    SCHEMA["/images/{id}"]["GET"].validate_response(status)
    refused = requests.post(
        f"{api_url}/uploads", json={**body, "styles": ["cubism"]}, headers=AUTH, timeout=30
    )
    assert refused.status_code == 400
    SCHEMA["/uploads"]["POST"].validate_response(refused)
