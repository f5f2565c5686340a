# -*- test-case-name: tests.smtp.test_smtp_headers -*-
"""
What an SMTP client sends that ends up in header fields: its HELO argument,
checked before the trace fields (L{tmail.delivery.trace}) quote it, so a
client cannot start a header line of its own (C{EHLO x\\nBcc: ...}); and
what starts a header field in message content.
"""

from __future__ import annotations

import ipaddress
import re

#: What the C{Received} header says instead of a HELO argument that is
#: neither a host name nor an address literal.
HELO_PLACEHOLDER = "invalid"

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
_HEADER_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")


def sanitiseHelo(argument: bytes) -> str:
    """
    The HELO/EHLO argument if it is a host name or an address literal
    (C{[192.0.2.1]}, C{[IPv6:2001:db8::1]}), else L{HELO_PLACEHOLDER}.
    """
    try:
        text = argument.decode("ascii")
    except UnicodeDecodeError:
        return HELO_PLACEHOLDER
    if len(text) > 255 or not text:
        return HELO_PLACEHOLDER
    if text.startswith("[") and text.endswith("]"):
        literal = text[1:-1]
        if literal[:5].lower() == "ipv6:":
            literal = literal[5:]
            version = 6
        else:
            version = 4
        try:
            address = ipaddress.ip_address(literal)
        except ValueError:
            return HELO_PLACEHOLDER
        return text if address.version == version else HELO_PLACEHOLDER
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if all(_LABEL.match(label) for label in labels):
        return text
    return HELO_PLACEHOLDER


def isHeaderField(line: bytes) -> bool:
    """Whether C{line} starts a header field (C{name:}, RFC 5322 2.2)."""
    return _HEADER_FIELD.match(line) is not None
