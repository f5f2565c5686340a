# -*- test-case-name: tests.smtp.test_smtp_submission -*-
"""
SMTP AUTH (RFC 4954) for the submission service: the C{AUTH} command, its
challenges and responses (L{tmail.smtp.sasl}), and the credentials check,
counted by the failed-login throttle (L{tmail.auth.throttle}).

AUTH is offered only over TLS and only where a checker is configured;
C{*} cancels an exchange (501), a malformed response is refused (501), a
check that fails for any reason but wrong credentials is temporary (454),
never a traceback.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.mail import smtp
from twisted.python.failure import Failure

from tmail.auth.policy import isSecure, peerHost
from tmail.auth.throttle import settle
from tmail.interfaces import ILoginAttempt
from tmail.smtp.commands import Reply
from tmail.smtp.sasl import MECHANISMS, MalformedResponseError, Mechanism, decodeResponse

if TYPE_CHECKING:
    from twisted.logger import Logger

    from tmail.smtp.factory import SMTPFactory
    from tmail.smtp.transaction import Transaction

__all__ = ["AuthCommand"]

COMMAND, AUTH = smtp.COMMAND, smtp.AUTH


class AuthCommand:
    """AUTH for an L{tmail.smtp.server.SMTPServer}: sets C{_user} once the client logged in."""

    if TYPE_CHECKING:
        factory: SMTPFactory
        transport: Any
        log: Logger
        mode: str
        _user: str | None
        _mechanism: Mechanism | None
        _transaction: Transaction | None

        def reply(self, reply: Reply) -> None: ...
        def sendCode(self, code: int, message: bytes = b"") -> None: ...
        def _wait(self, pending: Deferred[Any]) -> None: ...

    def _authEnabled(self) -> bool:
        return self.factory.submission and self.factory.checker is not None

    def ext_AUTH(self, rest: bytes) -> None:
        parts = rest.split()
        if not self._authEnabled():
            self.reply(Reply(503, "5.5.1", "Error: authentication not enabled"))
        elif not isSecure(self.transport):
            self.reply(
                Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
            )
        elif self._user is not None:
            self.reply(Reply(503, "5.5.1", "Error: already authenticated"))
        elif self._transaction is not None:
            self.reply(Reply(503, "5.5.1", "Error: MAIL transaction in progress"))
        elif not 1 <= len(parts) <= 2:
            self.reply(Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"))
        elif parts[0].upper() not in MECHANISMS:
            self.reply(Reply(504, "5.5.4", "Unrecognized authentication type"))
        else:
            self._mechanism = MECHANISMS[parts[0].upper()]()
            if len(parts) == 2:
                self._authStep(parts[1], initial=True)
            else:
                self._challenge(self._mechanism.firstChallenge)

    def _challenge(self, challenge: bytes) -> None:
        self.mode = AUTH
        self.sendCode(334, base64.b64encode(challenge))

    def state_AUTH(self, line: bytes) -> None:
        if line == b"*":
            self.mode = COMMAND
            self._mechanism = None
            self.reply(Reply(501, "5.7.0", "Authentication aborted"))
            return
        self._authStep(line, initial=False)

    def _authStep(self, line: bytes, *, initial: bool) -> None:
        mechanism = self._mechanism
        assert mechanism is not None
        try:
            result = mechanism.respond(decodeResponse(line, initial=initial))
        except MalformedResponseError:
            self.mode = COMMAND
            self._mechanism = None
            self.reply(Reply(501, "5.5.2", "Malformed authentication response"))
            return
        if isinstance(result, bytes):
            self._challenge(result)
            return
        self.mode = COMMAND
        self._mechanism = None
        self._checkCredentials(result)

    def _checkCredentials(self, credentials: UsernamePassword) -> None:
        """
        Check the credentials once the throttle counts the check as running
        (L{tmail.auth.throttle}); an address at its limit is refused
        without a check.
        """
        checker = self.factory.checker
        assert checker is not None
        host = peerHost(self.transport)

        def begun(attempt: ILoginAttempt | None) -> Deferred[None] | None:
            if attempt is None:
                self.reply(Reply(454, "4.7.0", "Too many failed authentications, try later"))
                return None
            checked: Deferred[object] = maybeDeferred(checker.requestAvatarId, credentials)
            checked.addCallback(avatarAddress)
            return settle(attempt, checked).addCallbacks(succeeded, failed)

        def avatarAddress(avatarId: object) -> bytes:
            if not isinstance(avatarId, bytes):
                raise UnauthorizedLogin("no user")
            return avatarId

        def succeeded(avatarId: bytes) -> None:
            self._user = avatarId.decode("utf-8")
            self.log.info("smtp: {user} authenticated from {client}", user=self._user, client=host)
            self.reply(Reply(235, "2.7.0", "Authentication successful"))

        def failed(reason: Failure) -> None:
            if not isinstance(reason.value, UnauthorizedLogin):
                self.log.failure("smtp: credentials check failed", reason)
                self.reply(Reply(454, "4.7.0", "Temporary authentication failure"))
                return
            self.log.info("smtp: authentication failed from {client}", client=host)
            self.reply(Reply(535, "5.7.8", "Authentication credentials invalid"))

        self._wait(self.factory.throttle.begin(host).addCallback(begun))
