"""Sandboxed Jinja, compiled once per campaign; one customer's record -> rendered values.

Speed matters here (a plan over a million rows), so every dynamic template of a message is
joined into one Jinja template per strictness and rendered with a single call per row; the
rare row that fails is rendered again field by field to say which template failed.

Templates see data, never methods: ``customer``, ``vars`` and ``campaign`` expose their
values only (no ``update``, ``keys``, ``append``… by attribute or by subscript), so rendering
one customer cannot change what the next one sees. And templates are bounded: a value longer
than `MAX_VALUE` (``'x' * 10**9`` is refused before it is made) or a row whose templates with
loops run longer than `MAX_SECONDS` makes that row invalid, never the process slow or huge.
"""

from __future__ import annotations

import difflib
import re
import signal
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runner.model import Field
from runner.yamlsource import format_path

CONTEXT_NAMES = frozenset({"customer", "vars", "campaign"})
_SEP = "\x1e"  # ASCII record separator: never typed into a campaign by a person
_FILTERED = "\x1f"
_SYNTAX = ("{{", "{%", "{#")


MAX_VALUE = 64 * 1024  # characters of one rendered value (or of a string a template makes)
MAX_SECONDS = 0.1  # of one row's rendering, for templates with loops


class RenderLimit(Exception):
    """A template went past a limit for this row."""


class _Environment(ImmutableSandboxedEnvironment):
    """Records are plain dicts: ``customer.x`` and ``customer['x']`` mean the field x and
    nothing else, never a method of the dict.

    Looking the key up first (instead of Jinja's attribute-then-item order) is faster, and it
    keeps dict methods and dunders out of reach of templates altogether. The immutable sandbox
    refuses the mutating methods of lists and sets too.
    """

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is dict:
            try:
                return obj[argument]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)

    def call_binop(self, _context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for times, thing in ((right, left), (left, right)):
                if (
                    isinstance(times, int)
                    and isinstance(thing, str | list | tuple)
                    and times * len(thing) > MAX_VALUE
                ):
                    raise RenderLimit(f"a value longer than {MAX_VALUE // 1024} KB")
            return left * right
        if isinstance(right, int | float) and abs(right) > 64 and left not in (0, 1, -1):
            raise RenderLimit("a power too large")
        return left**right


def _environment(undefined: type[jinja2.Undefined]) -> _Environment:
    env = _Environment(undefined=undefined, autoescape=False, keep_trailing_newline=False)
    # Nothing but plain helpers: no lipsum/cycler/joiner objects to poke at.
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    return env


STRICT = _environment(jinja2.StrictUndefined)
LENIENT = _environment(jinja2.ChainableUndefined)


def is_template(source: str) -> bool:
    return any(marker in source for marker in _SYNTAX)


def customer_fields(source: str, expression: bool = False) -> list[tuple[str, int]]:
    """The ``customer.x`` (or ``customer['x']``) a template reads: (x, line in the template).
    Call on a template that compiles."""
    ast = STRICT.parse(f"{{{{ {source} }}}}" if expression else source)
    found = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node  # type: ignore[attr-defined]  # both kinds have .node
        if not (isinstance(target, nodes.Name) and target.name == "customer"):
            continue
        if isinstance(node, nodes.Getattr):
            found.append((node.attr, node.lineno))
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            found.append((node.arg.value, node.lineno))
    return found


class TemplateSyntaxProblem(Exception):
    def __init__(self, message: str, lineno: int) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


def check_template(source: str, names: Mapping[str, Any], expression: bool = False) -> None:
    """Compile ``source`` and check the names it reads; raises `TemplateSyntaxProblem`."""
    try:
        ast = STRICT.parse(f"{{{{ {source} }}}}" if expression else source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateSyntaxProblem(f"template syntax error: {exc.message}", exc.lineno) from None
    # Jinja finds an unknown filter or test only when it compiles: say it here, as a problem.
    for used in ast.find_all((nodes.Filter, nodes.Test)):
        kind, known = (
            ("filter", STRICT.filters)
            if isinstance(used, nodes.Filter)
            else (
                "test",
                STRICT.tests,
            )
        )
        if used.name not in known:
            close = difflib.get_close_matches(used.name, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise TemplateSyntaxProblem(f"unknown {kind} '{used.name}'{hint}", used.lineno)
    unknown = sorted(meta.find_undeclared_variables(ast) - CONTEXT_NAMES - set(STRICT.globals))
    if unknown:
        raise TemplateSyntaxProblem(
            f"unknown name '{unknown[0]}' in template (available: customer, vars, campaign)", 1
        )
    for call in ast.find_all(nodes.Call):
        held = call.node
        if (
            isinstance(held, nodes.Getattr | nodes.Getitem)
            and isinstance(held.node, nodes.Name)
            and held.node.name in CONTEXT_NAMES
        ):
            raise TemplateSyntaxProblem(
                f"templates read values, not methods: {held.node.name} has no method to "
                "call (write customer.x, vars.x, campaign.name)",
                call.lineno,
            )
    for node in ast.find_all(nodes.Getattr):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "vars" and node.attr not in names:
            defined = ", ".join(sorted(names)) or "none"
            raise TemplateSyntaxProblem(
                f"vars.{node.attr} is not defined under vars: (defined: {defined})", node.lineno
            )


class Skip(str):
    """A reason a row is not sent. A str subclass so the hot path can tell it apart cheaply."""

    __slots__ = ()


FILTERED = Skip("filtered")


def render_constant(source: str, context: Mapping[str, Any]) -> str | None:
    """Render a template that reads no customer, under the row limits; why it fails for
    every customer, or None."""
    renderer = Renderer([Field(("template",), source)], None, context)
    got = renderer.render({})
    return str(got).replace(" in template", "") if type(got) is Skip else None


class Renderer:
    """Renders a message's fields for one customer at a time."""

    def __init__(
        self,
        fields: Sequence[Field],
        where: str | None,
        context: Mapping[str, Any],
    ) -> None:
        self._fields = list(fields)
        self._values: list[str] = [f.source for f in fields]  # constants stay as they are
        self._context = {**STRICT.globals, **context}
        self._strict = [i for i, f in enumerate(fields) if not f.lenient and is_template(f.source)]
        self._lenient = [i for i, f in enumerate(fields) if f.lenient and is_template(f.source)]
        self._where = where
        self._singles: dict[int, jinja2.Template] = {}
        self._where_expression: Any = None
        self._strict_joined = self._join(STRICT, self._strict, where)
        self._lenient_joined = self._join(LENIENT, self._lenient, None)
        # Only templates that loop can run long; the others are bounded by their input.
        loops = any(
            True
            for source in [*(f.source for f in fields), f"{{{{ {where} }}}}" if where else ""]
            if is_template(source)
            for _ in STRICT.parse(source).find_all((nodes.For, nodes.Macro, nodes.CallBlock))
        )
        self._deadline = _Deadline() if loops else None

    def _join(self, env: _Environment, indexes: list[int], where: str | None) -> _Compiled | None:
        if not indexes and where is None:
            return None
        body = _SEP.join(self._fields[i].source for i in indexes)
        if where is not None:
            body = f"{{% if {where} %}}{_SEP}{body}{{% else %}}{_FILTERED}{{% endif %}}"
        return _Compiled(env.from_string(body), self._context, body)

    def render(self, customer: dict[str, Any]) -> list[str] | Skip:
        """The values of every field in order, or the reason this customer is skipped."""
        if self._deadline is None:
            return self._render(customer)
        with self._deadline:
            return self._render(customer)

    def _render(self, customer: dict[str, Any]) -> list[str] | Skip:
        values = self._values
        context = self._context
        context["customer"] = customer
        if self._strict_joined is not None:
            values = values.copy()
            try:
                out = self._strict_joined()
            except RenderLimit as exc:
                return Skip(f"{exc} in the message templates")
            except Exception:
                return self._diagnose(context)
            if self._where is not None:
                if out == _FILTERED:
                    return FILTERED
                out = out[1:]
            if self._strict:
                parts = out.split(_SEP)
                if len(parts) != len(self._strict):
                    return self._one_by_one(context, values, self._strict)
                if len(out) > MAX_VALUE and (long := self._too_long(self._strict, parts)):
                    return long
                for i, part in zip(self._strict, parts, strict=True):
                    values[i] = part
        if self._lenient_joined is not None:
            if values is self._values:
                values = values.copy()
            try:
                out = self._lenient_joined()
            except RenderLimit as exc:
                return Skip(f"{exc} in the message templates")
            except Exception:
                return self._diagnose(context)
            parts = out.split(_SEP)
            if len(parts) != len(self._lenient):
                return self._one_by_one(context, values, self._lenient)
            if len(out) > MAX_VALUE and (long := self._too_long(self._lenient, parts)):
                return long
            for i, part in zip(self._lenient, parts, strict=True):
                values[i] = part
        return values

    def _too_long(self, indexes: list[int], parts: list[str]) -> Skip | None:
        for i, part in zip(indexes, parts, strict=True):
            if len(part) > MAX_VALUE:
                where = format_path(self._fields[i].path)
                return Skip(f"{where} renders longer than {MAX_VALUE // 1024} KB")
        return None

    def _one_by_one(
        self, context: dict[str, Any], values: list[str], indexes: list[int]
    ) -> list[str] | Skip:
        # A value that itself holds the separator: render each field on its own.
        for i in indexes:
            try:
                values[i] = self._single(i).render(context)
            except Exception as exc:
                return _reason(exc, self._fields[i])
            long = self._too_long([i], [values[i]])
            if long is not None:
                return long
        return values

    def _single(self, i: int) -> jinja2.Template:
        """Field ``i`` as a template of its own, compiled once (rows that fail are common)."""
        template = self._singles.get(i)
        if template is None:
            field = self._fields[i]
            env = LENIENT if field.lenient else STRICT
            template = self._singles[i] = env.from_string(field.source)
        return template

    def _diagnose(self, context: dict[str, Any]) -> Skip:
        """Find which template failed for this customer and say why."""
        if self._where is not None:
            if self._where_expression is None:
                self._where_expression = STRICT.compile_expression(
                    self._where, undefined_to_none=False
                )
            try:
                self._where_expression(**context)
            except Exception as exc:
                return _reason(exc, None, self._where)
        for i, field in enumerate(self._fields):
            if not is_template(field.source):
                continue
            try:
                self._single(i).render(context)
            except Exception as exc:
                return _reason(exc, field)
        return Skip("template error")


class _Compiled:
    """A joined template bound once to the renderer's context dict.

    Jinja builds a new Context per render; a shared one reads the caller's dict directly, so
    it can be made once and reused, as long as the template never assigns (``{% set %}``,
    loops, macros), which would leave values behind for the next customer.
    """

    def __init__(self, template: jinja2.Template, context: dict[str, Any], source: str) -> None:
        self._template = template
        self._render = template.root_render_func
        writes = any(
            True
            for node_type in (
                nodes.Assign,
                nodes.AssignBlock,
                nodes.For,
                nodes.Macro,
                nodes.CallBlock,
                nodes.With,
                nodes.Import,
                nodes.FromImport,
            )
            for _ in template.environment.parse(source).find_all(node_type)
        )
        self._shared = None if writes else template.new_context(context, shared=True)
        self._context = context

    def __call__(self) -> str:
        shared = self._shared
        if shared is None:
            return "".join(self._render(self._template.new_context(self._context, shared=True)))
        return "".join(self._render(shared))


_MISSING = re.compile(r"'dict object' has no attribute '([^']*)'")


class _Deadline:
    """Interrupts a render that runs past `MAX_SECONDS`, with SIGALRM. Only the main thread
    receives signals: elsewhere (the engine embedded in another program's thread) rows have
    no time limit, and the size limits still hold."""

    def __init__(self) -> None:
        self._usable = hasattr(signal, "setitimer")
        self._armed = False
        self._previous: Any = None

    def __enter__(self) -> None:
        if self._usable and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGALRM, self._fire)
            self._armed = True
            signal.setitimer(signal.ITIMER_REAL, MAX_SECONDS)

    def __exit__(self, *exc: object) -> None:
        if self._armed:
            self._armed = False  # an alarm from now on is ignored, not raised in other code
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)

    def _fire(self, _signum: int, _frame: object) -> None:
        if self._armed:
            self._armed = False
            raise RenderLimit(f"rendering took longer than {MAX_SECONDS * 1000:.0f} ms")


def _reason(exc: Exception, field: Field | None, where_source: str = "") -> Skip:
    """Why a row cannot be rendered, in words a person can act on (``field`` None: the
    audience's ``where``, whose text is ``where_source``)."""
    where = "audience.where" if field is None else format_path(field.path)
    if isinstance(exc, RenderLimit):
        return Skip(f"{exc} in {where}")
    if isinstance(exc, jinja2.UndefinedError):
        missing = _MISSING.search(exc.message or "")
        if field is not None and field.recipient:
            return Skip("no recipient id")
        source = where_source if field is None else field.source
        if missing and any(
            form.format(missing.group(1)) in source
            for form in ("customer.{}", "customer['{}']", 'customer["{}"]')
        ):
            return Skip(f"missing value: customer.{missing.group(1)} in {where}")
        return Skip(f"undefined: {exc.message} in {where}")
    if isinstance(exc, SecurityError):
        return Skip(f"unsafe template: {exc} in {where}")
    if isinstance(exc, TypeError) and "not supported between instances of 'str'" in str(exc):
        return Skip(f"{exc} in {where}: CSV values are text; compare numbers with | int")
    return Skip(f"template error: {type(exc).__name__}: {exc} in {where}")
