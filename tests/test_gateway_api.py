"""The JSON API: its endpoints, its refusals, and schemathesis against its OpenAPI."""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from lakeloop import Lake
from lakeloop import _sigv4 as sigv4
from lakeloop.errors import AccessDenied


class SigV4(requests.auth.AuthBase):
    """Signs a prepared ``requests`` request (what schemathesis sends) with SigV4."""

    def __init__(self, key: Any) -> None:
        self.key = key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        parts = urlsplit(r.url or "")
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        headers = {"host": parts.netloc}
        signed = sigv4.sign_headers(
            r.method or "GET",
            requests.utils.unquote(parts.path),
            sigv4.parse_query(parts.query),
            headers,
            access_key=self.key.access,
            secret_key=self.key.secret,
            amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            payload_hash=hashlib.sha256(body).hexdigest(),
        )
        for k, v in signed.items():
            if k != "host":
                r.headers[k] = v
        return r


def test_whoami_namespaces_stats(gateway: Any) -> None:
    b = gateway.bucket("api")
    gateway.lake.namespace(b).put("k", b"12345")
    with Lake.open(
        gateway.url, access_key=gateway.admin.access, secret_key=gateway.admin.secret
    ) as remote:
        assert remote.api("GET", "/whoami")["name"] == "admin"
        names = [n["name"] for n in remote.api("GET", "/namespaces")["namespaces"]]
        assert b in names
        stats = remote.api("GET", f"/namespaces/{b}")
        assert stats["usage"]["objects"] == 1 and stats["usage"]["bytes"] == 5
        assert remote.namespace(b).usage()["objects"] == 1
        assert "volumes" in remote.api("GET", f"/namespaces/{b}/compaction")
        assert remote.api("POST", f"/namespaces/{b}/fsck")["ok"] is True
        report = remote.api("POST", f"/namespaces/{b}/compaction")
        assert isinstance(report, dict)


def test_api_refusals(gateway: Any) -> None:
    b = gateway.bucket("api")
    reader = gateway.user("api-reader", {b: "read"})
    with Lake.open(gateway.url, access_key=reader.access, secret_key=reader.secret) as remote:
        assert remote.api("GET", f"/namespaces/{b}")["role"] == "read"
        with pytest.raises(AccessDenied):
            remote.api("POST", f"/namespaces/{b}/compaction")  # admin only
        other = gateway.bucket("api")
        with pytest.raises(AccessDenied):
            remote.api("GET", f"/namespaces/{other}")
        assert [n["name"] for n in remote.api("GET", "/namespaces")["namespaces"]] == [b]
    assert requests.get(f"{gateway.url}/api/v1/whoami", timeout=10).status_code == 403
    assert requests.get(f"{gateway.url}/api/v1/health", timeout=10).json() == {"ok": True}
    doc = requests.get(f"{gateway.url}/api/v1/openapi.json", timeout=10).json()
    assert "/api/v1/namespaces/{namespace}" in doc["paths"]


def test_api_fuzz(gateway: Any) -> None:
    """schemathesis cases for every operation of the OpenAPI document: no 5xx, and every
    answer matches the document (status, content type, schema)."""
    from hypothesis import given
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_url(f"{gateway.url}/api/v1/openapi.json")
    auth = SigV4(gateway.admin)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(auth=auth, checks=checks)

        run()
