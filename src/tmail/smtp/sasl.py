# -*- test-case-name: tests.smtp.test_smtp_commands -*-
"""
The SASL mechanisms of SMTP AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN.

A mechanism is fed the client's decoded responses one at a time and
answers with the next challenge, or with the finished credentials.
Twisted's own C{PLAINCredentials} ignores the authorization identity and
raises on a malformed response; these do neither.
"""

from __future__ import annotations

import base64
import binascii

from twisted.cred.credentials import UsernamePassword


class MalformedResponseError(Exception):
    """The client's response does not fit the mechanism."""


def decodeResponse(line: bytes, *, initial: bool = False) -> bytes:
    """
    Decode one base64 client response; C{=} is an empty initial response
    (RFC 4954 4).  Raises L{MalformedResponseError}.
    """
    if initial and line == b"=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedResponseError("not base64") from None


class Plain:
    """C{AUTH PLAIN}: one response, C{authzid NUL authcid NUL password}."""

    firstChallenge = b""

    def respond(self, response: bytes) -> bytes | UsernamePassword:
        parts = response.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            raise MalformedResponseError("expected authzid NUL authcid NUL password")
        authzid, authcid, password = parts
        if authzid and authzid != authcid:
            raise MalformedResponseError("acting for another user is not supported")
        return UsernamePassword(authcid, password)


class Login:
    """C{AUTH LOGIN}: the user name, then the password, each prompted for."""

    firstChallenge = b"Username:"

    def __init__(self) -> None:
        self._username: bytes | None = None

    def respond(self, response: bytes) -> bytes | UsernamePassword:
        if self._username is None:
            if not response:
                raise MalformedResponseError("empty user name")
            self._username = response
            return b"Password:"
        return UsernamePassword(self._username, response)


Mechanism = Plain | Login

#: The mechanisms offered, by name.
MECHANISMS: dict[bytes, type[Plain] | type[Login]] = {b"PLAIN": Plain, b"LOGIN": Login}
