"""tmail.store."""
