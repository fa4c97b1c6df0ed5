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


def normal_base(base_url: str) -> str:
    """``scheme://host:port/path`` in one spelling: the host normalised, the port always
    written, no trailing slash."""
    url = URL(base_url)
    scheme = (url.scheme or "https").lower()
    port = url.port or _DEFAULT_PORTS.get(scheme, 443)
    path = url.path.rstrip("/")
    return f"{scheme}://{normal_host(url.host or '')}:{port}{path}"


def bot_identity(api: str, base_url: str, bot_id: str) -> tuple[str, str, str]:
    """One bot, however its URL is spelled: the API, the normalised base URL and the bot id."""
    return (api, normal_base(base_url), bot_id)
