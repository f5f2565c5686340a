"""tmail.pop3."""
