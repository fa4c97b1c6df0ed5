"""Text from the API or the audience made inert before a person sees it.

An API's ``result`` or a customer's name can hold terminal escapes (``ESC ]0;…`` sets a
terminal's title; others move the cursor or rewrite what is shown) or Markdown and HTML that
would change a job summary. Nothing from outside reaches a terminal or a Markdown file
without passing here.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls (U+0080-U+009F, 8-bit CSI and OSC), and
# the format characters that reorder or hide what is shown: bidi embeddings, overrides and
# isolates (U+202A-U+202E, U+2066-U+2069, U+200E/F, U+061C), zero-width ones (U+200B-U+200D,
# U+2060-U+2064, U+FEFF), and the line and paragraph separators (U+2028/U+2029).
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)
_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>()#+!|~&])")
# Links a Markdown renderer would make live: a scheme, or a bare www. host.
_LINK = re.compile(r"(?i)\b(https?|ftp)://|\bwww\.")
# A spreadsheet reads a cell starting with these as a formula (OWASP, CSV injection).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def visible(text: str) -> str:
    """``text`` with every control and format character shown as ``?``, lines kept."""
    return _CONTROL.sub("?", text)


def terminal(text: str) -> str:
    """``text`` with every control character (escapes included) shown as ``?``; one line."""
    return _CONTROL.sub("?", text).replace("\n", " ").replace("\t", " ")


def defang(text: str) -> str:
    """URLs in untrusted text that no renderer turns into a link: ``hxxps://``, ``www[.]``."""
    return _LINK.sub(
        lambda m: (
            "www[.]" if m.group(0).lower() == "www." else m.group(1).replace("t", "x") + "://"
        ),
        text,
    )


def markdown(text: str) -> str:
    """``text`` as literal Markdown: no markup, no HTML, no table break, no live link, one
    line."""
    return _MARKDOWN.sub(r"\\\1", defang(terminal(text)))


def spreadsheet(text: str) -> str:
    """A CSV cell written from untrusted text that a spreadsheet never runs as a formula."""
    return "'" + text if text.startswith(_FORMULA) else text
