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


# Every value this process read from the environment for a ``${VAR}``: whatever leaves the
# process (errors at the CLI boundary included) is masked with them.
_RESOLVED: set[str] = set()


def resolved_values() -> frozenset[str]:
    return frozenset(_RESOLVED)


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
        _RESOLVED.add(value)
        return value

    return _REFERENCE.sub(substitute, text)


def resolve_lenient(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Substitute the ``${VAR}`` that are set and leave the others as written (for previews)."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        if not value:
            return match.group(0)
        _RESOLVED.add(value)
        return value

    return _REFERENCE.sub(substitute, text)


def encodings(secret: str) -> set[str]:
    """Every form in which the product may write ``secret``: raw, and percent-encoded as the
    URL builders and aiohttp do (with ``*`` and ``/`` left as they are or not, either case of
    hex digits), and as ``+`` for spaces."""
    forms = {secret, quote_plus(secret, safe="")}
    for safe in ("", "*", "/", "*/", "~", "*~"):
        quoted = quote(secret, safe=safe)
        forms.update({quoted, re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quoted)})
    return forms


HEAD = 6  # characters of a secret's head that are masked wherever they appear


class Masker:
    """Replaces secrets with ``***`` in any text bound for output: whole or in part (a text
    cut by someone else inside a secret still shows its head, which is masked too), raw or in
    any encoding the product sends it in. Mask before shortening a text, never after."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in {*secrets, *_RESOLVED}:
            if len(secret) >= 4:  # masking "a" would garble every message
                forms.update(encodings(secret))
        # Longest first, so that an encoded form is not half-masked by a shorter one.
        self._forms = sorted(forms, key=len, reverse=True)
        self._heads: dict[str, list[str]] = {}
        for form in self._forms:
            self._heads.setdefault(form[:HEAD], []).append(form)

    @property
    def active(self) -> bool:
        """Whether there is anything to mask at all."""
        return bool(self._heads)

    def __call__(self, text: str) -> str:
        for head, forms in self._heads.items():
            if head in text:
                text = _mask(text, head, forms)
        return text


def _mask(text: str, head: str, forms: list[str]) -> str:
    """Mask each run of ``text`` that is one of ``forms`` (which share ``head``), or a head of
    one at least `HEAD` long: the longest such run at each place."""
    out = []
    start = 0
    while (found := text.find(head, start)) != -1:
        end = found + len(head)
        for form in forms:
            stop = found + len(head)
            while (
                stop < len(text) and stop - found < len(form) and text[stop] == form[stop - found]
            ):
                stop += 1
            end = max(end, stop)
        out += [text[start:found], MASK]
        start = end
    out.append(text[start:])
    return "".join(out)
