"""tmail.cli."""
