"""Shared test support: a test CA, a realm with users, loopback listeners."""
