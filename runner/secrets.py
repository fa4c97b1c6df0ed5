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


_REMEMBERED = 4096  # distinct texts a masker remembers having masked
GRAM = 6  # consecutive characters of a secret never shown, in any mix of encodings
HEAD = GRAM  # (the first GRAM characters are one such run)
_HEX = re.compile(r"%([0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _distinctive(secret: str) -> str:
    """The part of a value worth masking in pieces: a URL read from the environment (a
    ``base_url``) without its scheme, which every URL shares."""
    return _SCHEME.sub("", secret)


def _units(text: str, decode: bool = True) -> tuple[str, list[tuple[int, int]] | None]:
    """``text`` as the bytes it stands for, whatever mix of raw and percent-encoded
    characters it holds: each ``%XX`` (either case) one byte (unless not ``decode``), a
    non-ASCII character its UTF-8 bytes, ``+`` and space one unit; with the span of ``text``
    each unit came from (None: one for one)."""
    if text.isascii() and ("%" not in text or not decode) and "+" not in text:
        return text, None
    units: list[str] = []
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(text):
        char = text[i]
        hexed = _HEX.match(text, i) if char == "%" and decode else None
        if hexed:
            units.append(" " if hexed.group(1) in ("2B", "2b", "20") else chr(int(hexed[1], 16)))
            spans.append((i, i + 3))
            i += 3
            continue
        if char == "+":
            char = " "
        for byte in char.encode("utf-8", "surrogatepass"):
            units.append(chr(byte))
            spans.append((i, i + 1))
        i += 1
    return "".join(units), spans


def _secret_units(secret: str) -> str:
    return _units(_distinctive(secret).replace("%", "%25"))[0]


class Masker:
    """Replaces secrets with ``***`` in any text bound for output: whole or in part, raw, in
    any encoding the product sends it in, or in any mix of raw and percent-encoded characters
    (an API that echoes what its server decoded), so that no `GRAM` consecutive characters of
    a secret are ever shown. Mask before shortening a text, never after."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._seen: dict[str, str] = {}
        self._grams: dict[int, set[str]] = {}
        for secret in {*secrets, *_RESOLVED}:
            whole = _units(secret.replace("%", "%25"))[0]
            if len(whole) < 4:  # masking "a" would garble every message
                continue
            self._grams.setdefault(len(whole), set()).add(whole)  # shown whole: always masked
            units = _secret_units(secret)  # in pieces: without a URL's scheme
            if len(units) < 4:
                continue
            size = min(GRAM, len(units))
            self._grams.setdefault(size, set()).update(
                units[i : i + size] for i in range(len(units) - size + 1)
            )

    @property
    def active(self) -> bool:
        """Whether there is anything to mask at all."""
        return bool(self._grams)

    def __call__(self, text: str) -> str:
        if not self._grams or not text:
            return text
        # An API's words repeat ("ok", "user blocked the bot"): each text is read once.
        done = self._seen.get(text)
        if done is None:
            done = self._mask(text)
            if len(self._seen) < _REMEMBERED:
                self._seen[text] = done
        return done

    def _mask(self, text: str) -> str:
        # "%41" in a text may be an encoded "A" or three characters of a secret that holds
        # "%": read it both ways when it holds a "%".
        units, spans = _units(text)
        covered = self._covered(units, spans)
        if "%" in text:
            covered += self._covered(*_units(text, decode=False))
            if "%" in units:  # encoded twice (a layer that re-encoded what it was given)
                again, inner = _units(units)
                if inner is not None and spans is not None:
                    inner = [(spans[a][0], spans[b - 1][1]) for a, b in inner]
                covered += self._covered(again, inner)
            covered = _merged(covered)
        if not covered:
            return text
        out = []
        at = 0
        for first, last in covered:
            out += [text[at : max(first, at)], MASK]
            at = max(at, last)
        out.append(text[at:])
        return "".join(out)

    def _covered(self, units: str, spans: list[tuple[int, int]] | None) -> list[tuple[int, int]]:
        """The spans of the text (not of ``units``) that show a run of a secret."""
        found: list[tuple[int, int]] = []
        for size, grams in self._grams.items():
            run: list[tuple[int, int]] = []  # this size's hits, in order: joined as they come
            for i in range(len(units) - size + 1):
                if units[i : i + size] in grams:
                    if run and run[-1][1] >= i:
                        run[-1] = (run[-1][0], i + size)
                    else:
                        run.append((i, i + size))
            found += run
        if len(self._grams) > 1:
            found = _merged(found)  # the sizes' runs, in order, overlapping ones joined
        if spans is None:
            return found
        return [(spans[start][0], spans[end - 1][1]) for start, end in found]


def _merged(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(runs):
        if merged and merged[-1][1] >= start:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
