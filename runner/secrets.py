"""``${VAR}`` references and the masking that keeps their values out of every output."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

from runner.errors import UsageError

MASK = "***"
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Anything that looks like an attempt at a reference: ${...} with a bad name, or $NAME.
_ATTEMPT = re.compile(r"\$\{[^}]*\}?|\$[A-Za-z_][A-Za-z0-9_]*")


def references(text: str) -> list[str]:
    return _REFERENCE.findall(text)


def syntax_problem(text: str) -> str | None:
    """Why ``text`` holds a malformed reference, or None when every ``$`` is fine."""
    for match in _ATTEMPT.finditer(text):
        if _REFERENCE.fullmatch(match.group()):
            continue
        found = match.group()
        if found.startswith("${"):
            return (
                f"malformed reference {found!r}: expected ${{NAME}} with NAME made of "
                "letters, digits and '_'"
            )
        return f"{found!r} is not read from the environment: write ${{{found[1:]}}}"
    return None


def resolve(text: str, where: str, environ: Mapping[str, str] | None = None) -> str:
    """Substitute every ``${VAR}``; an unset or empty variable is a `UsageError`."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        value = env.get(name, "")
        if not value:
            raise UsageError(
                f"{where}: environment variable {name} is not set (or empty); "
                f"export it before running, e.g. export {name}=..."
            )
        return value

    return _REFERENCE.sub(substitute, text)


class Masker:
    """Replaces secrets, raw or URL-encoded, with ``***`` in any text bound for output."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= 4:  # masking "a" would garble every message
                forms.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
        # Longest first, so that an encoded form is not half-masked by a shorter one.
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


def resolve_lenient(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Substitute the ``${VAR}`` that are set and leave the others as written (for previews)."""
    env = os.environ if environ is None else environ
    return _REFERENCE.sub(lambda m: env.get(m.group(1)) or m.group(0), text)
