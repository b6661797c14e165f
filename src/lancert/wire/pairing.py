"""How a POS is named in the client certificate a terminal gives it: ``urn:lancert:pos:<posId>``.

Shared by the terminal, which issues and checks these certificates, and the POS client, which checks
that what it was given names it; neither imports the other.
"""

from __future__ import annotations

import re

from cryptography import x509

from lancert.errors import UsageError

POS_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
POS_URI_PREFIX = "urn:lancert:pos:"


class InvalidPosId(UsageError):
    """A posId outside 1 to 64 letters, digits, '-' and '_'."""


def check_pos_id(value: object) -> str:
    if not isinstance(value, str) or not POS_ID.match(value):
        raise InvalidPosId("posId: must be 1 to 64 characters of letters, digits, '-' or '_'")
    return value


def pos_uri(pos_id: str) -> str:
    """The subjectAltName URI that names a POS in its client certificate."""
    return POS_URI_PREFIX + check_pos_id(pos_id)


def pos_id_of(cert: x509.Certificate) -> str | None:
    """The posId a client certificate names (its ``urn:lancert:pos:`` URI), or None."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(POS_URI_PREFIX) and POS_ID.match(uri[len(POS_URI_PREFIX):]):
            return uri[len(POS_URI_PREFIX):]
    return None
