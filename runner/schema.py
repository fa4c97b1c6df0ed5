"""The packaged JSON Schema, and its errors turned into messages a person can act on."""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from runner.errors import Problem
from runner.yamlsource import Document, Path, format_path

# Patterns say little to a person; these say what is wanted instead.
_PATTERN_HINTS: dict[Path, str] = {
    ("name",): "expected a slug: lowercase letters, digits, '-' and '_', at most 100 "
    "(e.g. spring-sale-2026)",
    ("bot", "base_url"): "expected an http:// or https:// URL, or ${VAR}",
}
_JSON_TYPES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "nothing (null)",
}
_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
}


@cache
def schema_text() -> str:
    return resources.files("runner").joinpath("schemas/campaign.schema.json").read_text("utf-8")


@cache
def name_pattern() -> re.Pattern[str]:
    """What a campaign's ``name`` may be, as the schema says (control reads names without
    a valid file around them)."""
    return re.compile(json.loads(schema_text())["properties"]["name"]["pattern"])


@cache
def _validator() -> jsonschema.Draft202012Validator:
    # The schema ships with the package; the tests check it against the metaschema, so no
    # command pays for that at every start (a sixtieth of a second here).
    return jsonschema.Draft202012Validator(json.loads(schema_text()))


def check(doc: Document, filename: str) -> list[Problem]:
    """Every schema violation in ``doc``, each pointing at its line."""
    problems: set[Problem] = set()
    for error in _validator().iter_errors(doc.data):
        path: Path = tuple(error.absolute_path)
        for at_key, sub_path, message in _describe(error, path):
            mark = doc.key_mark(sub_path) if at_key else doc.value_mark(sub_path)
            problems.add(Problem(filename, mark.line, mark.column, format_path(sub_path), message))
    return sorted(problems)


def _a(kind: Any) -> str:
    kinds = kind if isinstance(kind, list) else [kind]
    return " or ".join(_TYPE_NAMES.get(str(k), str(k)) for k in kinds)


def _describe(error: jsonschema.ValidationError, path: Path) -> list[tuple[bool, Path, str]]:
    """(point at the key?, path, message) for one schema error."""
    # jsonschema types these loosely (Unset | ...); they are plain JSON values here.
    v: Any = error.validator
    value: Any = error.instance
    schema: Any = error.schema
    expected: Any = error.validator_value
    if v == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        out: list[tuple[bool, Path, str]] = []
        for key in sorted(set(value) - set(allowed)):
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            guess = f"; did you mean '{hint[0]}'?" if hint else ""
            out.append(
                (
                    True,
                    (*path, key),
                    f"unknown key '{key}'{guess} (expected one of: {', '.join(allowed)})",
                )
            )
        return out
    if v == "required":
        missing = [k for k in expected if k not in value]
        return [(True, path, f"missing required key '{k}'") for k in missing]
    if v == "type":
        got = _JSON_TYPES.get(type(value), type(value).__name__)
        quote = ""
        wanted = [expected] if isinstance(expected, str) else expected
        if isinstance(value, dict) and "string" in wanted:
            # YAML reads an unquoted {{ customer.id }} as a mapping within a mapping.
            quote = ' (a template must be quoted: "{{ customer.id }}")'
        return [(False, path, f"expected {_a(expected)}, got {got}{quote}")]
    if v == "enum":
        options = ", ".join(str(o) for o in expected)
        return [(False, path, f"expected one of: {options}; got {value!r}")]
    if v == "const":
        return [(False, path, f"expected {expected!r}, got {value!r}")]
    if v == "pattern":
        wanted = _PATTERN_HINTS.get(path) or f"expected text matching {expected}"
        return [(False, path, f"{wanted}; got {value!r}")]
    if v in ("minimum", "maximum", "exclusiveMinimum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">"}[str(v)]
        return [(False, path, f"expected a number {op} {expected}, got {value!r}")]
    if v == "minLength":
        return [(False, path, "must not be empty")]
    if v == "minItems":
        return [(False, path, f"expected at least {expected} item(s)")]
    if v == "uniqueItems":
        return [(False, path, "items must not repeat")]
    if v == "minProperties":
        options = ", ".join(sorted(schema.get("properties", {})))
        return [(False, path, f"expected at least one of: {options}")]
    return [(False, path, error.message)]
