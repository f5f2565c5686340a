"""tmail.auth."""
