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


def first_commit(root: Path) -> str | None:
    """The first commit of the git repository at ``root`` (the same in every clone of it),
    or None without git."""
    import subprocess

    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-list", "--max-parents=0", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = sorted(done.stdout.split()) if done.returncode == 0 else []
    return found[0] if found else None


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
