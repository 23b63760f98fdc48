"""Where clients without credentials may connect from (mosquitto 2's model).

By default only loopback: the machine's own processes (thin-edge's child
connectors trust their local broker the same way). A network list is given
as CIDRs, ``127.0.0.0/8,::1``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: Final = ("127.0.0.0/8", "::1/128")


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``["127.0.0.0/8", "::1"]`` as networks; ValueError names a bad entry."""
    networks: list[IPNetwork] = []
    for cidr in cidrs:
        text = cidr.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"not an address or network (CIDR): {text!r}") from None
    return tuple(networks)


def peer_host(peer: str) -> str:
    """The address part of a ``host:port`` peer (IPv6 hosts contain colons)."""
    host, sep, _ = peer.rpartition(":")
    return host.strip("[]") if sep else peer


def peer_in(peer: str, networks: Iterable[IPNetwork]) -> bool:
    """Whether the ``host:port`` peer's address lies in one of ``networks``."""
    try:
        address = ipaddress.ip_address(peer_host(peer).split("%", 1)[0])
    except ValueError:
        return False  # not an IP peer (e.g. a Unix socket): never trusted
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        mapped: ipaddress.IPv4Address | ipaddress.IPv6Address = address.ipv4_mapped
    else:
        mapped = address
    return any(mapped in network for network in networks)
