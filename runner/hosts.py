"""What counts as one host, for the bot's identity (pacing, leases) and for states."""

from __future__ import annotations

from yarl import URL

# Names that always mean this machine: one bot behind ``localhost`` and ``127.0.0.1`` is one
# bot, with one limit.
_LOOPBACK = {"localhost", "localhost.localdomain", "ip6-localhost", "::1", "[::1]", "127.0.0.1"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_host(host: str) -> str:
    """A host name in one spelling: lower case, no trailing dot, loopback names as 127.0.0.1."""
    host = host.strip().rstrip(".").lower()
    if host in _LOOPBACK or host.startswith("127."):
        return "127.0.0.1"
    return host


def normal_origin(base_url: str) -> str:
    """``scheme://host:port`` in one spelling: the host normalised, the port always written."""
    url = URL(base_url)
    scheme = (url.scheme or "https").lower()
    port = url.port or _DEFAULT_PORTS.get(scheme, 443)
    return f"{scheme}://{normal_host(url.host or '')}:{port}"


def bot_identity(base_url: str, bot_id: str) -> tuple[str, str]:
    """One bot, however its URL is spelled and whichever version of the API its campaigns
    use: the limit is per bot (25 requests/s to the Broadcasting API), so a V1 and a V2
    campaign of one bot share it. The API's origin and the bot id; a path under the origin
    (V2's ``/public``) is no part of it."""
    return (normal_origin(base_url), bot_id)
