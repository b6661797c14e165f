"""Hostile input never makes the ePOS-Print endpoint fail: every body and query gets a SOAP answer with
one of the documented codes (or 413 when too large), never a 5xx, and only a valid job is printed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from printer_helpers import EPOS, envelope, running_printer

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

CODES = {"", "SchemaError", "DeviceNotFound"}
VALID = envelope('<text>ok</text><cut type="feed"/>')


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with running_printer(tmp_path_factory.mktemp("fuzz")) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def _mutations() -> st.SearchStrategy[bytes]:
    """Valid requests cut, spliced and overwritten, next to plain random bytes and XML-ish text."""
    cut = st.integers(0, len(VALID)).map(lambda n: VALID[:n])
    spliced = st.tuples(st.integers(0, len(VALID)), st.binary(max_size=40)).map(
        lambda t: VALID[:t[0]] + t[1] + VALID[t[0]:])
    xmlish = st.text(alphabet="<>/&;!?=\"' xs:epos-printbodyEnvelopeDOCTYPEENTITY#[]", max_size=200).map(
        str.encode)
    return st.one_of(st.binary(max_size=300), cut, spliced, xmlish)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_mutations(), devid=st.one_of(st.none(), st.text(max_size=20)),
       timeout=st.one_of(st.none(), st.text(max_size=8)))
def test_any_request_gets_a_documented_answer_never_a_5xx(
    client: httpx.Client, body: bytes, devid: str | None, timeout: str | None
) -> None:
    params = {k: v for k, v in (("devid", devid), ("timeout", timeout)) if v is not None}
    response = client.post("/cgi-bin/epos/service.cgi", params=params, content=body)
    assert response.status_code == 200, response.text
    (answer,) = ET.fromstring(response.content).iter(f"{{{EPOS}}}response")  # noqa: S314 - our own answer
    assert answer.get("success") in {"true", "false"}
    assert answer.get("code") in CODES
    if answer.get("success") == "true":
        assert devid == "local_printer"


def test_the_fuzz_client_prints_a_valid_job(client: httpx.Client) -> None:
    response = client.post("/cgi-bin/epos/service.cgi", params={"devid": "local_printer"}, content=VALID)
    assert b'success="true"' in response.content
