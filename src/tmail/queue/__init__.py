"""Outbound mail: the durable queue, delivery to other servers, DSNs and DKIM signing."""
