"""Where a request came from, and the address agents are told to use, behind proxies.

`X-Forwarded-For`, `-Host` and `-Proto` are honoured only on connections from a
`--trusted-proxy` address: anyone else could write them. The client is the first address,
counting from the right of `X-Forwarded-For`, that is not a trusted proxy (each proxy
appends the address it saw). `--public-url`, when given, wins over every header.
"""

import functools
import ipaddress
import re

from starlette.requests import Request

from uptend.errors import ConfigError
from uptend.server.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$")


@functools.lru_cache(maxsize=8)
def networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """The `--trusted-proxy` values (addresses or CIDR ranges) as networks."""
    out = []
    for value in proxies:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"--trusted-proxy {value!r} is not an IP address or range",
                hint="give an address (10.0.0.5) or a range (10.0.0.0/8), once per option",
            ) from None
    return tuple(out)


def _trusted(address: str | None, trusted: tuple[Network, ...]) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The address to rate-limit and log: `peer`, unless a trusted proxy says who it relays."""
    if not trusted or not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    for hop in reversed(hops):
        if _trusted(hop, trusted):
            continue
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:  # garbage where an address should be: not the proxy's word
            return peer
    return hops[0] if hops and _trusted(hops[0], trusted) else peer


def source_of(request: Request, settings: Settings) -> str:
    peer = request.client.host if request.client is not None else "unknown"
    if not settings.trusted_proxies:  # the common case: one attribute read
        return peer
    trusted = networks(settings.trusted_proxies)
    return client_address(peer, request.headers.get("x-forwarded-for"), trusted)


def _first(value: str | None) -> str:
    return (value or "").split(",")[0].strip()


def base_url(request: Request, settings: Settings) -> str:
    """The server's address as agents should use it, ending in '/'."""
    if settings.public_url:
        return settings.public_url.rstrip("/") + "/"
    if settings.trusted_proxies:
        peer = request.client.host if request.client is not None else None
        if _trusted(peer, networks(settings.trusted_proxies)):
            host = _first(request.headers.get("x-forwarded-host"))
            proto = _first(request.headers.get("x-forwarded-proto")).lower()
            if host and _HOST.match(host):
                scheme = proto if proto in ("http", "https") else request.url.scheme
                return f"{scheme}://{host}/"
    return str(request.base_url)


def targets_url(request: Request, settings: Settings) -> str:
    """Where agents fetch targets: `--artifacts-url` (a CDN), else under the base URL."""
    if settings.artifacts_url:
        return settings.artifacts_url.rstrip("/") + "/"
    return f"{base_url(request, settings)}tuf/targets/"


def check_url(option: str, url: str) -> str:
    """`url` if it can be handed to agents (http or https, with a host), else ConfigError."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ConfigError(
            f"{option} {url!r} is not an http(s) URL",
            hint=f"e.g. {option} https://updates.example.com",
        )
    return url
