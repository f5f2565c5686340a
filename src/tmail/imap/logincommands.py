# -*- test-case-name: tests.imap.test_imap_protocol -*-
"""
Logging in: STARTTLS (nothing pipelined after it runs, CVE-2011-0411 class),
LOGIN and AUTHENTICATE PLAIN/LOGIN under the plaintext policy and the
failed-login throttle, and COMPRESS=DEFLATE (RFC 4978).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.cred import credentials
from twisted.cred.error import LoginFailed
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.python.failure import Failure

from tmail.auth.throttle import settle
from tmail.errors import StoreFull
from tmail.imap.account import IMAPAccount
from tmail.imap.session import CommandError, IMAPSession, clientText, no
from tmail.imap.specialuse import makeSpecialFolders
from tmail.interfaces import (
    ILoginAttempt,
    IMailUser,
)

_log = Logger()
_S = imap4.IMAP4Server
_B = IMAPSession

__all__ = ["LoginCommands"]


#: The LOGIN mechanism's prompts, base64 of "Username:" and "Password:".
_USERNAME_PROMPT = base64.b64encode(b"Username:")
_PASSWORD_PROMPT = base64.b64encode(b"Password:")


def _decodeBase64(encoded: bytes) -> bytes:
    """A SASL response; C{=} is the empty one (RFC 4959).  BAD when not base64."""
    try:
        return base64.b64decode(b"" if encoded == b"=" else encoded, validate=True)
    except binascii.Error:
        raise imap4.IllegalClientResponse("Invalid base64") from None


class LoginCommands(IMAPSession):
    """STARTTLS, LOGIN, AUTHENTICATE and COMPRESS for an L{tmail.imap.server.IMAPServer}."""

    _authTag: bytes | None = None
    _authMechanism = b"PLAIN"
    _authUser: bytes | None = None

    if TYPE_CHECKING:

        def _catchUp(self) -> Deferred[None]: ...

    # Not authenticated

    def do_STARTTLS(self, tag: bytes) -> None:
        if self._secure():
            raise CommandError(b"BAD", b"TLS is already active")
        if self.ctx is None or not self.canStartTLS:
            raise no(b"TLS is not available")
        discarded = self.clearLineBuffer()
        if discarded:
            _log.info(
                "Discarded {count} bytes pipelined after STARTTLS from {host}",
                count=len(discarded),
                host=self._host,
            )
        self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
        self.transport.startTLS(self.ctx)
        self.startedTLS = True

    unauth_STARTTLS = (do_STARTTLS,)

    def do_LOGIN(self, tag: bytes, user: bytes, password: bytes) -> Deferred[None]:
        if not self._plaintextOK():
            raise no(b"[PRIVACYREQUIRED] Use STARTTLS before logging in")
        return self._login(tag, credentials.UsernamePassword(user, password))

    unauth_LOGIN = (do_LOGIN, _B.arg_astring, _B.arg_finalastring)

    def do_AUTHENTICATE(self, tag: bytes, mechanism: bytes, initial: bytes | None) -> Any:
        mechanism = mechanism.upper()
        if mechanism not in (b"PLAIN", b"LOGIN"):
            raise no(b"[CANNOT] Unsupported authentication mechanism")
        if not self._plaintextOK():
            raise no(b"[PRIVACYREQUIRED] Use STARTTLS before authenticating")
        self._authMechanism, self._authUser = mechanism, None
        if mechanism == b"PLAIN":
            if initial is not None:
                return self._plain(tag, initial)
            self._challenge(tag, b"")
        elif initial is not None:
            self._authUser = _decodeBase64(initial)
            self._challenge(tag, _PASSWORD_PROMPT)
        else:
            self._challenge(tag, _USERNAME_PROMPT)
        return None

    unauth_AUTHENTICATE = (do_AUTHENTICATE, _S.arg_atom, _B.opt_line)

    def do_COMPRESS(self, tag: bytes, mechanism: bytes) -> Deferred[None]:
        if mechanism.upper() != b"DEFLATE":
            raise imap4.IllegalClientResponse("Unknown compression mechanism")
        if self._inflater is not None:
            raise no(b"[COMPRESSIONACTIVE] DEFLATE is active already")

        def caughtUp(_: object) -> None:
            # The tagged reply goes out uncompressed, at once: the store
            # was asked first.
            self.sendPositiveResponse(tag, b"DEFLATE active")
            self.startCompressing()

        return self._catchUp().addCallback(caughtUp)

    auth_COMPRESS = select_COMPRESS = (do_COMPRESS, _S.arg_atom)

    def _challenge(self, tag: bytes, prompt: bytes) -> None:
        """Ask for the next SASL response (RFC 3501 7.5: C{+ <base64>})."""
        self._authTag = tag
        self.parseState = "authenticate"
        self.sendLine(b"+ " + prompt)

    def parse_authenticate(self, line: bytes) -> None:
        self.parseState = "command"
        tag, self._authTag = self._authTag, None
        assert tag is not None
        line = line.strip()
        if line == b"*":
            self._authUser = None
            self.sendBadResponse(tag, b"AUTHENTICATE cancelled")
            return
        if self._authMechanism == b"PLAIN":
            maybeDeferred(self._plain, tag, line).addErrback(self._commandFailed, tag)
        elif self._authUser is None:
            try:
                self._authUser = _decodeBase64(line)
            except imap4.IllegalClientResponse as e:
                self.sendBadResponse(tag, clientText(e, b"Invalid base64"))
                return
            self._challenge(tag, _PASSWORD_PROMPT)
        else:
            user, self._authUser = self._authUser, None
            maybeDeferred(
                lambda: self._login(tag, credentials.UsernamePassword(user, _decodeBase64(line)))
            ).addErrback(self._commandFailed, tag)

    def _plain(self, tag: bytes, encoded: bytes) -> Deferred[None]:
        data = _decodeBase64(encoded)
        plain = imap4.PLAINCredentials()
        plain.setResponse(data)
        authzid = data.split(b"\0", 1)[0]
        if authzid and authzid != plain.username:
            raise no(b"[AUTHORIZATIONFAILED] Cannot log in as another user")
        return self._login(tag, plain)

    def _login(self, tag: bytes, creds: credentials.IUsernamePassword) -> Deferred[None]:
        """
        Log in once the throttle counts the check as running
        (L{tmail.auth.throttle}); an address at its limit is refused
        without a check.
        """
        host = self._host
        user = creds.username.decode("utf-8", "replace")

        def begun(attempt: ILoginAttempt | None) -> Deferred[None]:
            if attempt is None:
                raise no(b"[UNAVAILABLE] Too many failed logins; try again later")
            login: Deferred[Any] = self.portal.login(creds, None, IMailUser)
            return settle(attempt, login).addCallbacks(succeeded, failed)

        def succeeded(result: tuple[Any, IMailUser, Callable[[], None]]) -> Deferred[None] | None:
            interface, mailUser, logout = result
            if self._lost:
                logout()
                return None
            if interface is not IMailUser:
                logout()
                raise TypeError(f"realm returned {interface!r}, not IMailUser")
            avatar = IMAPAccount(mailUser.store, mailUser.name)
            self.account, self._onLogout, self.state = avatar, logout, "auth"

            def notMade(failure: Failure) -> None:
                if failure.check(StoreFull):  # type: ignore[no-untyped-call]
                    _log.warn("Disk full: no special folders made for {user}", user=avatar.user)
                else:
                    _log.failure(
                        "Could not make the special folders of {user}", failure, user=avatar.user
                    )

            made = makeSpecialFolders(self.settings, avatar.store).addErrback(notMade)
            return made.addCallback(lambda _: loggedIn(avatar))

        def loggedIn(avatar: IMAPAccount) -> None:
            self.setTimeout(self.POSTAUTH_TIMEOUT)
            _log.info("IMAP login {user} from {host}", user=avatar.user, host=host)
            caps = b" ".join(self.listCapabilities())
            self.sendPositiveResponse(tag, b"[CAPABILITY " + caps + b"] Logged in")

        def failed(failure: Failure) -> Failure:
            if not isinstance(failure.value, LoginFailed):
                return failure
            _log.info("IMAP login failed for {user} from {host}", user=user, host=host)
            raise no(b"[AUTHENTICATIONFAILED] Authentication failed")

        return self.throttle.begin(host).addCallback(begun)
