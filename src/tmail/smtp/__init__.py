"""tmail.smtp."""
