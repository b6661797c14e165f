"""The ePOS-Print protocol's messages: the SOAP request a POS page sends, and the printer's answer.

Wire format, as Epson documents it for ePOS-Print (ePOS-Print API / ePOS SDK for JavaScript): a browser
``POST``s to ``/cgi-bin/epos/service.cgi?devid=<device id>&timeout=<ms>`` a SOAP 1.1 envelope whose body
is one ``epos-print`` element (namespace :data:`EPOS_NS`) holding print commands in order (``text``,
``feed``, ``barcode``, ``symbol``, ``cut``, ...). The printer answers a SOAP envelope with one
``response`` element: ``success`` ("true"/"false"), ``code`` (empty, or an error code such as
``SchemaError`` or ``DeviceNotFound``) and ``status`` (the ASB status bitmask, decimal).

This module knows no HTTP: :mod:`lancert.printer.web` moves these messages, :mod:`lancert.printer.device`
decides what the printer does with them.

Parsing is hostile-input safe: SOAP 1.1 forbids a document type declaration in a message, so any DTD is
refused before the tree is built (no entity can be declared, hence none expanded: no billion-laughs, no
external entities); the body size is bounded by the transport before parsing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # fed only documents that passed refuse_dtd()
from dataclasses import dataclass, field
from xml.parsers import expat

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
EPOS_NS = "http://www.epson-pos.com/schemas/2011/03/epos-print"

# Error codes of the ePOS-Print response (Epson's ePOS-Print XML reference, "response" element).
SCHEMA_ERROR = "SchemaError"  # the request is not a valid ePOS-Print document
DEVICE_NOT_FOUND = "DeviceNotFound"  # no printer with that device id
# ASB status bits (the same reference): the simulator has no sensors, so a print only ever sets this.
ASB_PRINT_SUCCESS = 0x00000002
ASB_IDLE = 0  # online, cover closed, paper present, nothing printed: the answer to a connection probe

# Print commands of an epos-print document; anything else in the namespace is a schema error.
COMMANDS = frozenset({
    "text", "feed", "image", "logo", "barcode", "symbol", "hline", "vline-begin", "vline-end", "page",
    "cut", "pulse", "sound", "command", "layout", "recovery", "reset",
})
CUT_TYPES = frozenset({"no_feed", "feed", "reserve"})

# The prefixes Epson's own answers use (``s:`` for SOAP, the ePOS namespace as default).
ET.register_namespace("s", SOAP_NS)
ET.register_namespace("", EPOS_NS)


class SchemaError(Exception):
    """The request is not an ePOS-Print document; the printer answers ``code="SchemaError"``."""


@dataclass(frozen=True)
class Receipt:
    """What one print job puts on paper, in order: text runs, feeds, barcodes and cuts."""

    items: tuple[dict[str, str | int], ...] = field(default=())

    @property
    def text(self) -> str:
        """Every ``text`` command's content, concatenated exactly as sent."""
        return "".join(str(i["text"]) for i in self.items if "text" in i)

    def as_dict(self) -> dict[str, object]:
        """The stored receipt: the text once, and the commands in order, each text command as the
        ``[start, end]`` of its part of ``text`` (it was stored twice, text and items)."""
        items: list[dict[str, object]] = []
        start = 0
        for item in self.items:
            if "text" in item:
                end = start + len(str(item["text"]))
                items.append({"text_span": [start, end]})
                start = end
            else:
                items.append(dict(item))
        return {
            "text": self.text,
            "cuts": [i["cut"] for i in self.items if "cut" in i],
            "barcodes": [{"type": i["barcode"], "data": i["data"]} for i in self.items if "barcode" in i],
            "items": items,
        }


@dataclass(frozen=True)
class Response:
    """The printer's answer: ``success``, ``code`` and the ASB ``status``."""

    success: bool
    code: str = ""
    status: int = 0

    def to_xml(self) -> bytes:
        envelope = ET.Element(f"{{{SOAP_NS}}}Envelope")
        body = ET.SubElement(envelope, f"{{{SOAP_NS}}}Body")
        ET.SubElement(body, f"{{{EPOS_NS}}}response", {
            "success": "true" if self.success else "false", "code": self.code, "status": str(self.status),
        })
        return ET.tostring(envelope, encoding="utf-8", xml_declaration=True)


def refuse_dtd(document: bytes) -> None:
    """Raise :class:`SchemaError` if ``document`` is not well-formed or declares a DTD (or any entity).

    expat is run with handlers that stop at the first declaration, so nothing is ever expanded.
    """
    parser = expat.ParserCreate()

    def refuse(*_args: object) -> None:
        raise SchemaError("a document type declaration is not allowed in a SOAP message")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    try:
        parser.Parse(document, True)
    except expat.ExpatError as exc:
        raise SchemaError(f"malformed XML ({exc})") from None


def _receipt_item(element: ET.Element) -> dict[str, str | int]:
    tag = element.tag.removeprefix(f"{{{EPOS_NS}}}")
    if tag == "text":
        return {"text": element.text or ""}
    if tag == "feed":
        line = element.get("line", "1")
        if not (line.isascii() and line.isdigit()) or int(line) > 255:
            raise SchemaError("feed line must be 0 to 255")
        return {"feed": int(line)}
    if tag == "cut":
        cut = element.get("type", "feed")
        if cut not in CUT_TYPES:
            raise SchemaError(f"cut type must be one of {', '.join(sorted(CUT_TYPES))}")
        return {"cut": cut}
    if tag in ("barcode", "symbol"):
        kind = element.get("type")
        if not kind:
            raise SchemaError(f"{tag} needs a type")
        return {tag if tag == "barcode" else "barcode": kind, "data": element.text or ""}
    return {"command": tag}


def parse_print_request(document: bytes) -> Receipt:
    """The receipt an ePOS-Print SOAP request asks for; :class:`SchemaError` for anything else."""
    refuse_dtd(document)
    try:
        root = ET.fromstring(document)  # noqa: S314 - no DTD (checked above), so no entities
    except ET.ParseError as exc:
        raise SchemaError(f"malformed XML ({exc})") from None
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise SchemaError("not a SOAP 1.1 envelope")
    bodies = root.findall(f"{{{SOAP_NS}}}Body")
    if len(bodies) != 1:
        raise SchemaError("a SOAP envelope needs exactly one Body")
    documents = list(bodies[0])
    if len(documents) != 1 or documents[0].tag != f"{{{EPOS_NS}}}epos-print":
        raise SchemaError(f"the Body must hold one epos-print element ({EPOS_NS})")
    items = []
    for element in documents[0]:
        if not element.tag.startswith(f"{{{EPOS_NS}}}") or element.tag[len(EPOS_NS) + 2:] not in COMMANDS:
            raise SchemaError(f"unknown print command {element.tag}")
        items.append(_receipt_item(element))
    return Receipt(tuple(items))


def print_request(text: str, *, cut: str = "feed") -> bytes:
    """A minimal request, as the ePOS SDK's ``ePOSBuilder`` makes for ``addText(text); addCut()``.

    Used by ``lancert up``'s demo page (which builds the same document in JavaScript) and the tests.
    """
    envelope = ET.Element(f"{{{SOAP_NS}}}Envelope")
    body = ET.SubElement(envelope, f"{{{SOAP_NS}}}Body")
    doc = ET.SubElement(body, f"{{{EPOS_NS}}}epos-print")
    ET.SubElement(doc, f"{{{EPOS_NS}}}text").text = text
    ET.SubElement(doc, f"{{{EPOS_NS}}}cut", {"type": cut})
    return ET.tostring(envelope, encoding="utf-8", xml_declaration=True)
