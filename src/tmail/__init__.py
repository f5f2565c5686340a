"""tmail: a mail server framework on Twisted (SMTP, IMAP4, POP3 over Maildir)."""

__version__ = "0.1.0"
