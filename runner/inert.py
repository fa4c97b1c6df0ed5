"""Text from the API or the audience made inert before a person sees it.

An API's ``result`` or a customer's name can hold terminal escapes (``ESC ]0;…`` sets a
terminal's title; others move the cursor or rewrite what is shown) or Markdown and HTML that
would change a job summary. Nothing from outside reaches a terminal or a Markdown file
without passing here.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, and C1 controls (U+0080-U+009F, 8-bit CSI and OSC).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>()#+!|~&])")


def terminal(text: str) -> str:
    """``text`` with every control character (escapes included) shown as ``?``; one line."""
    return _CONTROL.sub("?", text).replace("\n", " ").replace("\t", " ")


def markdown(text: str) -> str:
    """``text`` as literal Markdown: no markup, no HTML, no table break, one line."""
    return _MARKDOWN.sub(r"\\\1", terminal(text))
