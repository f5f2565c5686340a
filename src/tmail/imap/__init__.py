"""tmail.imap."""
