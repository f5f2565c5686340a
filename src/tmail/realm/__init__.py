"""tmail.realm."""
