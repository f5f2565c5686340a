"""The loads the harness puts on servers, one module per protocol."""
