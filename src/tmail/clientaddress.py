"""
Which client an address belongs to, for the limits kept per client.

An IPv4 address is one client.  An IPv6 client usually holds a whole
prefix (a /64 at least, often a /56 or /48): counted per address, it could
open any number of connections and guess any number of passwords.  So the
addresses of one IPv6 prefix count as one client, as Postfix's anvil does
with C{smtpd_client_ipv6_prefix_length} and Dovecot's auth penalty with a
/48.
"""

from __future__ import annotations

import ipaddress

#: The default IPv6 prefix length one client is taken to hold.
IPV6_PREFIX_LENGTH = 64


def clientKey(host: str, ipv6Prefix: int = IPV6_PREFIX_LENGTH) -> str:
    """
    The key limits count C{host} under: the host itself, or for an IPv6
    address (not an IPv4-mapped one) its C{ipv6Prefix}-bit network.
    """
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if address.version == 4:
        return host
    mapped = address.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return str(ipaddress.ip_network(f"{address}/{ipv6Prefix}", strict=False))
