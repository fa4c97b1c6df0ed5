"""Durable run state: who was sent, who failed, who is uncertain; one run at a time.

One promise, kept in one place (`runner.state.core`): a recipient's claim is durable before its
request leaves, so after a crash nobody is sent twice (what was in flight becomes
``uncertain``); one run per campaign at a time; a dead process never leaves a lock behind; a
pause is seen by every run sharing the state. Below it, a `Store` (`runner.state.store`) does
only what differs between databases, chosen once from the location by `open_store`:

- `runner.state.sqlite`: a file, by default ``.campaign-state/<name>.sqlite3`` at the root of
  the git repository that holds the campaign (beside the file outside a repository), so that
  the same campaign reached from any folder finds the same state.
- `runner.state.postgres`: a ``postgresql://`` URL, for CI runners, teams and workers; its
  locks are advisory locks that die with the connection, and a per-bot lease keeps a bot's
  limit across processes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from runner import repository
from runner.errors import UsageError

ENVIRONMENT = "CAMPAIGN_STATE"
_SCHEMES = ("postgresql://", "postgres://")
# Characters that end the userinfo of a URL when written raw: a password holding one is cut
# there by every parser, and the rest of it would be read as a host or a path.
_BREAKS_USERINFO = set("/?#[]\\")
_PASSWORD_PARAM = re.compile(r"(?i)([?&]password=)([^&#]*)")


@dataclass(frozen=True)
class Location:
    """Where a campaign's state lives: a SQLite file or a PostgreSQL URL."""

    path: Path | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if self.url is not None:
            _check_url(self.url)

    def __str__(self) -> str:
        if self.url is None:
            return str(self.path)
        return mask_url(self.url)

    @property
    def passwords(self) -> list[str]:
        """Every password this state's connection may use, for the masker: the URL's own
        (userinfo and ``password=``) and libpq's (``PGPASSWORD``, the password and service
        files)."""
        return [*_passwords(self.url), *libpq_passwords()] if self.url else []


def libpq_passwords() -> list[str]:
    """The passwords libpq would find outside the URL: ``PGPASSWORD``, the password file
    (``PGPASSFILE`` or ``~/.pgpass``) and the service file (``PGSERVICEFILE`` or
    ``~/.pg_service.conf``). Masked whether or not a connection uses them."""
    found = [os.environ.get("PGPASSWORD") or ""]
    home = Path.home()
    passfile = Path(os.environ.get("PGPASSFILE") or home / ".pgpass")
    for line in _lines(passfile):
        # host:port:database:user:password, with \: and \\ escaped
        fields = re.split(r"(?<!\\):", line)
        if len(fields) >= 5:
            found.append(":".join(fields[4:]).replace("\\:", ":").replace("\\\\", "\\"))
    service = Path(os.environ.get("PGSERVICEFILE") or home / ".pg_service.conf")
    for line in _lines(service):
        key, _, value = line.partition("=")
        if key.strip().lower() == "password":
            found.append(value.strip())
    return [p for p in found if p]


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def is_url(text: str) -> bool:
    return text.startswith(_SCHEMES)


def location(text: str) -> Location:
    """A location as a person writes it: a ``postgresql://`` URL or a file path."""
    return Location(url=text) if is_url(text) else Location(path=Path(text))


def _split(url: str) -> tuple[str, str, str]:
    """(scheme://, userinfo, the rest) by libpq's rule: the userinfo ends at the last ``@``
    before the path, so that a password holding ``@`` is masked whole."""
    scheme, _, rest = url.partition("://")
    head, at, tail = rest.rpartition("@")
    if not at:
        return scheme + "://", "", rest
    return scheme + "://", head, tail


def _passwords(url: str) -> list[str]:
    found = []
    _, userinfo, rest = _split(url)
    if ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    found += [m.group(2) for m in _PASSWORD_PARAM.finditer(rest)]
    decoded = []
    for password in found:
        decoded += [password, unquote(password)]
    return [p for p in dict.fromkeys(decoded) if p]


def mask_url(url: str) -> str:
    """The URL with every password replaced by ``***``."""
    scheme, userinfo, rest = _split(url)
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    rest = _PASSWORD_PARAM.sub(lambda m: m.group(1) + "***", rest)
    return f"{scheme}{userinfo}@{rest}" if userinfo else f"{scheme}{rest}"


def _check_url(url: str) -> None:
    _, userinfo, _ = _split(url)
    if _BREAKS_USERINFO & set(userinfo):
        raise UsageError(
            f"{mask_url(url)}: the user or password of this state URL holds a character that "
            "must be percent-encoded in a URL (/ ? # [ ] \\): write # as %23, / as %2F, "
            "? as %3F, [ as %5B, ] as %5D, \\ as %5C. Nothing was sent"
        )


def locate(
    given: str | None, campaign_file: Path, name: str, sandbox: bool, test: bool = False
) -> Location:
    """The state of campaign ``name``: ``--state``, else ``$CAMPAIGN_STATE``, else the file at
    the campaign's repository root. A rehearsal's (``sandbox``) or a test send's (``test``)
    state always stands apart, in a local file, so that neither ever marks a recipient of the
    broadcast as delivered."""
    apart = "test" if test else "sandbox" if sandbox else None
    if given is None:
        given = os.environ.get(ENVIRONMENT) or None
    if given is not None and not is_url(given):
        path = Path(given)
        if apart:
            path = path.with_name(f"{path.stem}.{apart}{path.suffix or '.sqlite3'}")
        return Location(path=path)
    if given is not None and not apart:
        return Location(url=given)
    return default_location(campaign_file, name, apart)


_APART = (".sandbox.sqlite3", ".test.sqlite3")


def state_files(folder: Path) -> list[Location]:
    """The broadcast's state files in a folder (``.campaign-state/``): rehearsals' and test
    sends' left out, and found by their names as written, never by a pattern."""
    try:
        found = sorted(folder.iterdir())
    except OSError:
        return []
    return [
        Location(path=p)
        for p in found
        if p.name.endswith(".sqlite3") and not p.name.endswith(_APART) and p.is_file()
    ]


def default_location(campaign_file: Path, name: str, apart: str | None = None) -> Location:
    """The local file a campaign's state lives in when nothing else is named."""
    suffix = f".{apart}.sqlite3" if apart else ".sqlite3"
    return Location(path=repository.root(campaign_file) / ".campaign-state" / f"{name}{suffix}")


def alternatives(given: str | None, campaign_file: Path, name: str) -> list[Location]:
    """The other states this repository uses, where a campaign's history may live when the
    chosen one holds none: ``$CAMPAIGN_STATE``, the default file, and every other state file
    beside it (`campaign state copy` can put many campaigns in one), less the chosen one."""
    chosen = locate(given, campaign_file, name, False)
    found = []
    env = os.environ.get(ENVIRONMENT) or None
    if env is not None:
        found.append(location(env))
    default = default_location(campaign_file, name)
    found.append(default)
    if default.path is not None:
        found += state_files(default.path.parent)
    return [loc for loc in dict.fromkeys(found) if not same(loc, chosen)]


def same(a: Location, b: Location) -> bool:
    """Whether two locations are one state, however they are spelled."""
    if a.path is not None and b.path is not None:
        return os.path.realpath(a.path) == os.path.realpath(b.path)
    if a.url is not None and b.url is not None:
        return _normal_url(a.url) == _normal_url(b.url)
    return False


def _normal_url(url: str) -> str:
    from runner.hosts import normal_host

    _, userinfo, rest = _split(url)
    user = userinfo.split(":", 1)[0]
    hostport, _, tail = rest.partition("/")
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    return f"{user}@{normal_host(host)}:{port or '5432'}/{tail}"
