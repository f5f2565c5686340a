"""tmail.config."""
