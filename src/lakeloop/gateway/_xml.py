"""S3's XML: errors and results out, request documents (multipart, delete) in."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import escape

from lakeloop.gateway._errors import S3Error

__all__ = ["element", "error_xml", "iso8601", "parse", "render"]

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def iso8601(ts: float) -> str:
    """``2026-01-02T03:04:05.000Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def element(tag: str, children: Iterable[Any] | str | int | None = None) -> str:
    """One element: text for str/int/bool, nested for an iterable of strings."""
    if children is None:
        return f"<{tag}/>"
    if isinstance(children, bool):
        return f"<{tag}>{'true' if children else 'false'}</{tag}>"
    if isinstance(children, str | int):
        return f"<{tag}>{escape(str(children))}</{tag}>"
    return f"<{tag}>{''.join(children)}</{tag}>"


def render(root: str, children: Iterable[str]) -> bytes:
    return _HEAD + f'<{root} xmlns="{NS}">{"".join(children)}</{root}>'.encode()


def error_xml(code: str, message: str, resource: str, request_id: str) -> bytes:
    return (
        _HEAD
        + (
            "<Error>"
            + element("Code", code)
            + element("Message", message)
            + element("Resource", resource)
            + element("RequestId", request_id)
            + "</Error>"
        ).encode()
    )


def _strip(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse(body: bytes, root: str) -> ET.Element:
    """Parse a request document whose root element is *root*; MalformedXML otherwise.

    DTDs are refused outright (no entity expansion of any kind).
    """
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise S3Error("MalformedXML", "document type declarations are not accepted")
    try:
        doc = ET.fromstring(body)
    except ET.ParseError as exc:
        raise S3Error("MalformedXML", f"the XML is not well-formed: {exc}") from None
    if _strip(doc.tag) != root:
        raise S3Error("MalformedXML", f"expected a <{root}> document")
    for el in doc.iter():
        el.tag = _strip(el.tag)
    return doc
