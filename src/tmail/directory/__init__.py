"""tmail.directory."""
