"""twistd plugin: C{twistd tmail --config PATH}.  Imports tmail lazily."""

from twisted.application.service import ServiceMaker

tmail = ServiceMaker(
    "tmail",
    "tmail.tap",
    "A mail server: SMTP, submission, LMTP, IMAP4 and POP3 over Maildir",
    "tmail",
)
