"""The repository a campaign lives in: where its state and reports go by default, and the
boundary its audience file must stay inside."""

from __future__ import annotations

import os
import stat
from pathlib import Path

# Kernel and device trees: never an audience, wherever a link points.
_SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))


def root(campaign_file: Path) -> Path:
    """The root of the git repository holding ``campaign_file``, else the file's folder."""
    path = campaign_file.resolve()
    for folder in path.parents:
        if (folder / ".git").exists():
            return folder
    return path.parent


def identity(root: Path) -> str | None:
    """The git repository at ``root`` as every clone of it names it: its ``origin`` remote
    (``github.com/owner/repo``, however the URL is spelled), else its first commit; None
    without git, or in a shallow clone with no remote (its first commit is only where the
    clone stops)."""
    if not (root / ".git").exists():
        return None
    origin = _git(root, "config", "--get", "remote.origin.url")
    if origin:
        return _normal_remote(origin)
    if _git(root, "rev-parse", "--is-shallow-repository") != "false":
        return None
    roots = sorted((_git(root, "rev-list", "--max-parents=0", "HEAD") or "").split())
    return roots[0] if roots else None


def _normal_remote(url: str) -> str:
    """``host/path`` of a remote: the same for its https, ssh and scp-like spellings."""
    url = url.strip().removesuffix("/").removesuffix(".git")
    if "://" in url:
        rest = url.split("://", 1)[1]
        host, _, path = rest.partition("/")
    else:  # git@github.com:owner/repo
        host, _, path = url.partition(":")
    host = host.rpartition("@")[2].split(":")[0].lower()
    return f"{host}/{path.strip('/')}"


def _git(root: Path, *args: str) -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def audience_problem(path: Path, campaign_file: Path, outside_allowed: bool) -> str | None:
    """Why ``path`` may not be read as the audience of ``campaign_file``, or None.

    The file must be a regular file inside the campaign's repository after every link is
    resolved (a pull request could otherwise point a preview at /etc/passwd or at
    /proc/self/environ, and print it). ``outside_allowed`` (the command line's
    ``--audience-outside-repo``: the choice of whoever runs the command, never of the
    campaign file under review) lifts the repository boundary only.
    """
    resolved = path.resolve()
    if any(resolved == s or s in resolved.parents for s in _SYSTEM):
        return f"{resolved} is a system file, never an audience"
    try:
        mode = os.stat(resolved).st_mode
    except OSError:
        return None  # a missing file is said elsewhere
    if not stat.S_ISREG(mode):
        return f"{resolved} is not a regular file (a pipe, a device or a folder)"
    boundary = root(campaign_file)
    if not outside_allowed and boundary != resolved and boundary not in resolved.parents:
        return (
            f"{resolved} is outside the campaign's repository ({boundary}); audience files "
            "live beside their campaign. To read a local export on purpose, run with "
            "--audience-outside-repo"
        )
    return None
