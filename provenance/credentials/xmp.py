"""XMP packets: parse one safely, read property values from it, and build a packet or add a
description to one as bytes, so that nothing else in the packet is re-serialised."""

from __future__ import annotations

import re
from collections.abc import Callable
from xml.etree import ElementTree

from aigcguard.provenance.credentials.containers import MAX_TEXT_BYTES

__all__ = [
    "RDF_NS",
    "XMP_NS",
    "merged_packet",
    "new_packet",
    "parse_xmp",
    "tag_is",
    "xmp_values",
]

XMP_NS = "http://ns.adobe.com/xap/1.0/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

_RDF_CLOSE_RE = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?RDF\s*>")
_FORBIDDEN_XML_RE = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def parse_xmp(packet: bytes) -> ElementTree.Element:
    """The x:xmpmeta (or bare rdf:RDF) element of an XMP packet; ValueError when unreadable."""
    if len(packet) > MAX_TEXT_BYTES:
        raise ValueError(f"packet larger than {MAX_TEXT_BYTES:,} bytes")
    # XMP never needs a DTD; refusing one shuts out entity expansion attacks entirely.
    if _FORBIDDEN_XML_RE.search(packet):
        raise ValueError("DOCTYPE or ENTITY declaration, not allowed in XMP")
    # Cut out the root element: packets carry xpacket wrappers, padding and sometimes NULs.
    for local in (b"xmpmeta", b"RDF"):
        start = re.search(rb"<([A-Za-z_][\w.-]*:)?" + local + rb"[\s/>]", packet)
        if start is None:
            continue
        prefix = re.escape(start.group(1) or b"")
        ends = list(re.finditer(rb"</" + prefix + local + rb"\s*>", packet))
        if not ends:
            tag = (start.group(1) or b"").decode() + local.decode()
            raise ValueError(f"no closing tag for <{tag}>")
        try:
            return ElementTree.fromstring(packet[start.start() : ends[-1].end()])
        except ElementTree.ParseError as exc:
            raise ValueError(f"not well-formed XML ({exc})") from None
    raise ValueError("no x:xmpmeta or rdf:RDF element")


def xmp_values(root: ElementTree.Element, match: Callable[[str], bool]) -> list[str]:
    """Values of the properties whose ``{ns}name`` satisfies ``match``, written as attributes
    (exiv2's compact form), element text, or an rdf:resource URI."""
    values = []
    for el in root.iter():
        values += [v for k, v in el.attrib.items() if match(k)]
        if isinstance(el.tag, str) and match(el.tag):
            resource = el.get(f"{{{RDF_NS}}}resource")
            values.append(resource if resource is not None else "".join(el.itertext()))
    return [v.strip() for v in values if v.strip()]


def tag_is(ns: str, name: str) -> Callable[[str], bool]:
    """A ``match`` for :func:`xmp_values`: exactly the property ``name`` of namespace ``ns``."""
    tag = f"{{{ns}}}{name}"
    return lambda t: t == tag


def new_packet(description: bytes) -> bytes:
    """A whole packet, for a file that has none, holding one ``rdf:Description``."""
    return (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        + f' <rdf:RDF xmlns:rdf="{RDF_NS}">\n'.encode()
        + description
        + b" </rdf:RDF>\n</x:xmpmeta>\n"
        + b'<?xpacket end="w"?>'
    )


def merged_packet(packet: bytes, description: bytes) -> bytes:
    """``packet`` with ``description`` spliced in before its last ``</rdf:RDF>``: every other
    byte of the packet stays as it was."""
    closes = list(_RDF_CLOSE_RE.finditer(packet))
    if not closes:
        raise ValueError("no </rdf:RDF> to add to")
    at = closes[-1].start()
    return packet[:at] + description + packet[at:]
