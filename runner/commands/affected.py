"""`campaign affected`: which campaigns a change touches, for CI to select what to run.

A campaign is affected when its own file changed or its audience file did (an audience-only
change must reach its campaign). Paths travel NUL-separated with ``-z``, so that no file name
(spaces, ``$``, quotes, newlines) can split or run anything in the workflow that reads them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from runner.campaign import expand, problems_of


def affected_campaigns(changed: Iterable[str], targets: list[str]) -> list[Path]:
    """The campaign files among ``targets`` that ``changed`` paths (relative to the working
    folder, as git prints them) touch, in order."""
    touched = {os.path.normpath(path) for path in changed if path}
    found = []
    for campaign in expand(targets):
        if os.path.normpath(campaign) in touched:
            found.append(campaign)
            continue
        _, doc = problems_of(campaign)
        audience = doc.data.get("audience") if doc and isinstance(doc.data, dict) else None
        file = audience.get("file") if isinstance(audience, dict) else None
        if isinstance(file, str) and os.path.normpath(campaign.parent / file) in touched:
            found.append(campaign)
    return found
