"""The OpenAPI document is valid OpenAPI: validators and strict client generators read it."""

from __future__ import annotations

from openapi_spec_validator import validate


def test_api_openapi_document_is_valid(client):
    document = client.get("/api/v1/openapi.json").get_json()
    validate(document)  # raises OpenAPIValidationError, naming the place
