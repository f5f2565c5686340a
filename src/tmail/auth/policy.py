"""Whether a session may send a password in the clear."""

from __future__ import annotations

import ipaddress

from twisted.internet.interfaces import ISSLTransport, ITransport

from tmail.config.schema import PlaintextAuthPolicy


def isSecure(transport: ITransport) -> bool:
    """Whether the connection is protected by TLS."""
    return ISSLTransport.providedBy(transport)


def isLoopback(transport: ITransport) -> bool:
    """Whether the peer is on this machine (a loopback address or a unix socket)."""
    peer = transport.getPeer()
    host = getattr(peer, "host", None)
    if host is None:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plaintextAuthAllowed(policy: PlaintextAuthPolicy, transport: ITransport) -> bool:
    """
    Apply the C{allow_plaintext_auth} setting: TLS sessions always may;
    otherwise C{always} allows, C{loopback} allows only local peers and
    C{never} refuses.
    """
    if isSecure(transport) or policy == "always":
        return True
    if policy == "loopback":
        return isLoopback(transport)
    return False


def peerHost(transport: ITransport) -> str:
    """The client's address as a string, for throttling and logs."""
    return str(getattr(transport.getPeer(), "host", "local"))
