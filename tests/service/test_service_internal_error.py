"""A bug behind a handler answers 500 JSON, never a traceback (the app in-process, with a broken
provisioner standing in for, say, a lost database connection)."""

from __future__ import annotations

import asyncio

import httpx
from service_testlib import CODE, make_csr

from lancert.pki import CertificateAuthority
from lancert.service.app import create_app
from lancert.service.issuer import InternalCAIssuer


class BrokenProvisioner:
    def native(self, *_args: object) -> None:
        raise RuntimeError("connection to /var/lib/secret.db lost")

    compatible = native


def test_unexpected_exception_is_a_json_500_without_details() -> None:
    from datetime import timedelta

    issuer = InternalCAIssuer(CertificateAuthority.create_root("test"), timedelta(days=1))
    app = create_app(BrokenProvisioner(), issuer)  # type: ignore[arg-type]
    body = {"db_uuid": "d", "enterprise_code": CODE, "box_id": "b", "csr": make_csr()}

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/api/v1/certificates", json=body)

    response = asyncio.run(call())
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    assert "secret" not in response.text and "Traceback" not in response.text
