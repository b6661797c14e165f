"""URLs and JSON views of the ACME objects (RFC 8555 section 7.1): directory, account, order,
authorization, challenge. Pure functions of the stored values; no HTTP, no SQL."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import josepy as jose

from lancert.service.acmeserver.store import Account, Order

PREFIX = "/acme"
# Every authorization is valid from its creation: the names are under the database's own label, and
# the service is the zone's DNS, so there is nothing to prove. Clients still expect a challenge in a
# valid authorization (RFC 8555 7.1.4: the one that was validated); dns-01 is the true story.
CHALLENGE_TYPE = "dns-01"


def rfc3339(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class Urls:
    """The server's URLs under the origin the client used (the Host it sent), so the ``url`` of its
    JWS and every link we give it agree, whatever name or port it reached us by."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.base = origin + PREFIX

    @property
    def directory(self) -> str:
        return f"{self.base}/directory"

    def endpoint(self, name: str) -> str:
        return f"{self.base}/{name}"

    def account(self, account_id: str) -> str:
        return f"{self.base}/acct/{account_id}"

    def orders(self, account_id: str) -> str:
        return f"{self.base}/acct/{account_id}/orders"

    def order(self, order_id: str) -> str:
        return f"{self.base}/order/{order_id}"

    def finalize(self, order_id: str) -> str:
        return f"{self.base}/order/{order_id}/finalize"

    def authorization(self, order_id: str, index: int) -> str:
        return f"{self.base}/authz/{order_id}/{index}"

    def challenge(self, order_id: str, index: int) -> str:
        return f"{self.base}/chall/{order_id}/{index}"

    def certificate(self, certificate_id: str) -> str:
        return f"{self.base}/cert/{certificate_id}"

    def account_id_of(self, kid: str) -> str | None:
        """The account id of a ``kid`` that is one of our account URLs, else None."""
        prefix = f"{self.base}/acct/"
        rest = kid[len(prefix):] if kid.startswith(prefix) else ""
        return rest if rest and "/" not in rest and len(rest) <= 32 else None


def directory(urls: Urls, meta: dict[str, str] | None = None) -> dict[str, Any]:
    """RFC 8555 7.1.1; ``meta`` adds ``termsOfService`` and ``website`` when configured: some clients
    (acme.sh, acmetool) read ``termsOfService`` unguarded and stop without one."""
    return {
        "newNonce": urls.endpoint("new-nonce"),
        "newAccount": urls.endpoint("new-account"),
        "newOrder": urls.endpoint("new-order"),
        "revokeCert": urls.endpoint("revoke-cert"),
        "keyChange": urls.endpoint("key-change"),
        "renewalInfo": urls.endpoint("renewal-info"),
        "meta": {**(meta or {}), "externalAccountRequired": True},
    }


def account(urls: Urls, value: Account) -> dict[str, Any]:
    return {"status": value.status, "contact": list(value.contact), "orders": urls.orders(value.id)}


def identifier(name: str) -> dict[str, str]:
    return {"type": "dns", "value": name}


def order(urls: Urls, value: Order) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": value.current_status,
        "expires": rfc3339(value.expires),
        "identifiers": [identifier(n) for n in value.names],
        "authorizations": [urls.authorization(value.id, i) for i in range(len(value.names))],
        "finalize": urls.finalize(value.id),
    }
    if value.certificate_id:
        body["certificate"] = urls.certificate(value.certificate_id)
    if value.error:
        body["error"] = value.error
    if value.replaces:
        body["replaces"] = value.replaces  # RFC 9773 section 5: echoed as sent
    return body


def challenge(urls: Urls, value: Order, index: int) -> dict[str, Any]:
    token = hashlib.sha256(f"{value.id}/{index}".encode()).digest()
    return {
        "type": CHALLENGE_TYPE,
        "url": urls.challenge(value.id, index),
        "status": "valid",
        "token": jose.b64encode(token).decode(),
        "validated": rfc3339(value.created_at),
    }


def authorization(urls: Urls, value: Order, index: int) -> dict[str, Any]:
    name = value.names[index]
    wildcard = name.startswith("*.")
    body: dict[str, Any] = {
        "status": "valid",
        "expires": rfc3339(value.expires),
        "identifier": identifier(name[2:] if wildcard else name),
        "challenges": [challenge(urls, value, index)],
    }
    if wildcard:
        body["wildcard"] = True
    return body
