"""Where webhooks may go: never the gateway's own network (server-side request forgery).

A workspace key sets its own ``webhook_url``; without this check a tenant could make the gateway
POST to ``127.0.0.1``, the cloud metadata address, or a database port, and read what it found
from the delivery log. So an address is refused when it is loopback, private, link-local,
multicast, unspecified or otherwise not global (IPv4-mapped IPv6 addresses included), unless
``WAGATE_WEBHOOK_ALLOW_PRIVATE`` is set (a gateway whose receivers live on its own network).

The URL is checked when it is saved (an address written as an IP in any form, or a name that
resolves to such an address now), and again at every send: the connection is made only to the
addresses the check let through, so a name that resolves differently later (DNS rebinding)
gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from wagate.errors import InvalidInput


class AddressBlocked(OSError):
    """Every address of the webhook's host is one the gateway does not send to."""


class BlockedUrl(InvalidInput):
    """A webhook URL the gateway will not send to (a 422)."""


def forbidden(address: str) -> bool:
    """Whether webhooks must not be sent to this IP address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_multicast or not ip.is_global


def _literal(host: str) -> str | None:
    """The host as an IP address when it is written as one, else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """Resolves through ``inner`` and keeps only the addresses webhooks may go to."""

    def __init__(self, inner: AbstractResolver) -> None:
        self.inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        allowed = [r for r in found if not forbidden(r["host"])]
        if not allowed:
            raise AddressBlocked(f"{host} resolves only to addresses webhooks are not sent to")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


class Guard:
    """The gateway's rule for webhook addresses; ``allow_private`` turns it off."""

    def __init__(self, allow_private: bool, resolver: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self.inner = resolver

    def resolver(self) -> AbstractResolver:
        """A resolver for the webhook client's connector (a new one per client)."""
        inner = self.inner or DefaultResolver()
        return inner if self.allow_private else GuardedResolver(inner)

    def refuses_literal(self, url: str) -> bool:
        """Whether the URL names a forbidden address directly (the connector would not resolve
        it, so the resolver cannot refuse it)."""
        if self.allow_private:
            return False
        address = _literal(urlsplit(url).hostname or "")
        return address is not None and forbidden(address)

    async def check(self, url: str) -> None:
        """``BlockedUrl`` when the URL names, or now resolves to, only forbidden addresses; a
        name that does not resolve yet is left to the check at send time."""
        if self.allow_private:
            return
        host = urlsplit(url).hostname or ""
        address = _literal(host)
        if address is not None:
            if forbidden(address):
                raise BlockedUrl(_REFUSED)
            return
        resolver = GuardedResolver(self.inner or DefaultResolver())
        try:
            await resolver.resolve(host, 0, socket.AF_UNSPEC)
        except AddressBlocked:
            raise BlockedUrl(_REFUSED) from None
        except OSError:
            return
        finally:
            if self.inner is None:
                await resolver.close()


_REFUSED = (
    "webhook_url points to a loopback, private, link-local or otherwise non-public address; "
    "the gateway does not send webhooks there (an operator can allow it with "
    "WAGATE_WEBHOOK_ALLOW_PRIVATE=true)"
)
