# -*- test-case-name: tests.queue.test_queue_dane -*-
"""
TLS client connections authenticated by TLSA records instead of the CA
store (RFC 7672 3).

Twisted's C{optionsForClientTLS} checks a chain against trusted CAs and
the host's name; DANE needs neither (DANE-EE ignores names and dates) or
other anchors (DANE-TA), so L{DANEClientCreator} is an
C{IOpenSSLClientConnectionCreator} of its own: Twisted's default TLS
settings (C{CertificateOptions}), SNI with the MX host name (RFC 7672
8.1), and a verify callback that, at the leaf, checks the chain the
server sent against the records with L{verifyChain}.  A mismatch fails
the handshake with L{DANEMismatch} as the reason the connection was
lost (as Twisted's own host name check does), so nothing is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail.queue.tlsa import DANEMismatch, TLSARecord, verifyChain

__all__ = ["DANEClientCreator"]

_log = Logger()


@implementer(IOpenSSLClientConnectionCreator)
class DANEClientCreator:
    """
    Client TLS connections to C{hostname} that must match C{records} (its
    usable TLSA records).
    """

    def __init__(self, hostname: str, records: Sequence[TLSARecord]) -> None:
        self.hostname = hostname
        self.records = tuple(records)
        self._options = CertificateOptions(verify=False)

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """A connection that sends SNI and checks the chain against the records."""
        connection = SSL.Connection(self._options.getContext(), None)
        connection.set_tlsext_host_name(self.hostname.encode("ascii"))
        connection.set_verify(SSL.VERIFY_PEER, self._verifier(tlsProtocol))
        return connection

    def _verifier(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> Callable[[SSL.Connection, crypto.X509, int, int, int], bool]:
        protocol: TLSMemoryBIOProtocol | None = tlsProtocol
        verdict: bool | None = None

        def verify(
            connection: SSL.Connection, certificate: crypto.X509, error: int, depth: int, ok: int
        ) -> bool:
            nonlocal verdict
            if depth != 0:
                # OpenSSL knows no anchor: the whole chain is judged at the leaf.
                return True
            if verdict is None:
                # OpenSSL asks again for each of its own complaints about the leaf.
                verdict = judge(connection)
            return verdict

        def judge(connection: SSL.Connection) -> bool:
            nonlocal protocol
            try:
                chain = connection.get_peer_cert_chain(as_cryptography=True) or []
                record = verifyChain(self.records, chain, self.hostname)
            except DANEMismatch as e:
                if protocol is not None:
                    protocol.failVerification(Failure(e))  # type: ignore[no-untyped-call]
                protocol = None
                return False
            except Exception:
                _log.failure("queue: checking {host}'s certificate chain", host=self.hostname)
                if protocol is not None:
                    unchecked = DANEMismatch("the certificate chain could not be checked")
                    protocol.failVerification(Failure(unchecked))  # type: ignore[no-untyped-call]
                protocol = None
                return False
            protocol = None
            _log.info(
                "queue: TLS to {host} authenticated by TLSA record {record}",
                host=self.hostname,
                record=str(record),
            )
            return True

        return verify
