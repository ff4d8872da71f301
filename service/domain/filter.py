"""The RFC 7644 §3.4.2.2 filter grammar and PATCH path grammar (§3.5.2), parsed to an AST.

    parse_filter(text: str, rtype: ResourceType = USER_TYPE) -> Expr      raises InvalidFilter
    parse_path(text: str, rtype: ResourceType = USER_TYPE) -> Path        raises InvalidPath (UnknownPathAttribute
                                                                          for an attribute we don't define)

The AST is evaluated in memory by `matching.py` and compiled to SQL by `store/filter_sql.py`.

Attribute names are resolved case-insensitively through `schema.resolve`, so the AST only holds
canonical `AttrRef`s. Inside a valuePath filter (`emails[type eq "work"]`) the attribute refs are the
sub-attributes of the multi-valued attribute, and `matches_element` is called with one element of it
(`matches` detects that case too, see its docstring).

Semantics shared with service/store/filter_sql.py (two-valued logic, a missing attribute is never an error):
- a comparison on a missing/null attribute is false; `ne` is `not eq`, so it is TRUE when the attribute is missing;
- `eq null` means "not present", `ne null` means "present"; `pr` is false for null, "", [] and {};
- on a multi-valued attribute a comparison is true if ANY value matches (`ne`: if none equals);
- strings compare case-insensitively unless the attribute is caseExact; dateTimes as instants (naive = UTC);
- booleans only with eq/ne (Entra's "True"/"False" strings are accepted); numbers as numbers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

from service.domain.errors import InvalidFilter, InvalidPath
from service.domain.limits import MAX_VALUE_LENGTH
from service.domain.schema import USER_TYPE, AttrRef, ResourceType, resolve
from service.domain.text import unstorable

Value = str | int | float | bool | None

# Characters in a filter or path: room for a comparison on any value we store (domain/limits.py), even one
# whose every character must be written as a six-character \uXXXX escape, plus 4,096 for the rest.
MAX_LENGTH = 6 * MAX_VALUE_LENGTH + 4096
MAX_DEPTH = 50  # nesting of (), not() and []
MAX_TERMS = 200  # comparisons: bounds the AST depth, which evaluation and SQL compilation recurse over

COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_ORDER_OPS = frozenset({"gt", "ge", "lt", "le"})
_STRING_OPS = frozenset({"co", "sw", "ew"})
_STRING_TYPES = frozenset({"string", "reference", "binary"})
NUMBER_TYPES = frozenset({"integer", "decimal"})


class UnknownPathAttribute(InvalidPath):
    """A PATCH path naming an attribute we don't define: the PATCH layer may tolerate it (DESIGN §6)."""


@dataclass(frozen=True)
class Compare:
    """`attr op value`; op is lower-case: eq ne co sw ew gt ge lt le."""

    attr: AttrRef
    op: str
    value: Value


@dataclass(frozen=True)
class Present:
    attr: AttrRef


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not:
    expr: Expr


@dataclass(frozen=True)
class ValuePath:
    """`emails[type eq "work"]`: some element of the multi-valued `attr` matches `filter`.

    `filter` refers to sub-attributes as `AttrRef(schema, attr, sub)` with the same `attr`.
    `emails[type eq "work"].value eq "x"` is `ValuePath(emails, And(<type eq work>, Compare(emails.value, eq, x)))`.
    """

    attr: AttrRef
    filter: Expr


Expr = Compare | Present | And | Or | Not | ValuePath


@dataclass(frozen=True)
class Path:
    """A PATCH path: `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub` (`sub` set on `ref` then)."""

    ref: AttrRef
    filter: Expr | None = None


# --- values -------------------------------------------------------------------------------------------------


def parse_datetime(value: str) -> datetime:
    """An RFC 3339 / ISO 8601 instant; a value without an offset is taken as UTC. Raises InvalidFilter."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidFilter(f"Invalid filter: {value!r} is not a valid dateTime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def comparable(ref: AttrRef) -> AttrRef:
    """A complex attribute compared as a whole means its `value` sub-attribute (`emails eq "x"`)."""
    if ref.sub is None and ref.attr.type == "complex":
        value = ref.attr.sub("value")
        if value is None:
            raise InvalidFilter(f"Invalid filter: cannot compare complex attribute '{ref}'; name a sub-attribute")
        return AttrRef(ref.schema, ref.attr, value)
    return ref


def check_compare(ref: AttrRef, op: str, value: Value) -> Value:
    """Validate `ref op value` against the attribute type; returns the value to compare with. Raises InvalidFilter."""
    attr = ref.target
    kind = attr.type

    def bad(why: str) -> NoReturn:
        raise InvalidFilter(f"Invalid filter: '{ref} {op}': {why}")

    if op not in COMPARE_OPS:
        bad("unknown operator")
    if value is None:
        if op not in ("eq", "ne"):
            bad("null can only be compared with eq or ne")
        return None
    if kind == "boolean":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"  # Entra sends booleans as strings
        if not isinstance(value, bool):
            bad(f"'{attr.name}' is a boolean, got {_describe(value)}")
        if op not in ("eq", "ne"):
            bad("booleans can only be compared with eq or ne")
        return value
    if isinstance(value, bool):
        bad(f"'{attr.name}' is a {kind}, got a boolean")
    if kind in NUMBER_TYPES:
        if not isinstance(value, int | float):
            bad(f"'{attr.name}' is a number, got {_describe(value)}")
        if op in _STRING_OPS:
            bad(f"'{op}' needs a string attribute")
        return value
    if not isinstance(value, str):
        bad(f"'{attr.name}' is a {kind}, got {_describe(value)}")
    if kind == "dateTime":
        if op in _STRING_OPS:
            bad(f"'{op}' needs a string attribute")
        parse_datetime(value)
        return value
    if kind not in _STRING_TYPES:
        bad(f"cannot compare a {kind} attribute")
    return value


def _describe(value: Value) -> str:
    return "a string" if isinstance(value, str) else "a number" if isinstance(value, int | float) else repr(value)


# --- tokenizer ----------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<punct>[()\[\]])
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
      | (?P<sub>\.[A-Za-z_$][A-Za-z0-9_$-]*)
      | (?P<word>[A-Za-z_$][A-Za-z0-9_$:.-]*)""",
    re.VERBOSE | re.DOTALL,
)
_LITERALS: dict[str, Value] = {"true": True, "false": False, "null": None}


@dataclass(frozen=True)
class _Tok:
    kind: str  # punct string number sub word
    text: str
    pos: int  # 1-based, for messages

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.lower() in words


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            where = f"at position {pos + 1}"
            if text[pos] == '"':
                raise InvalidFilter(f"Invalid filter: unterminated string starting {where}")
            raise InvalidFilter(f"Invalid filter: unexpected character {text[pos]!r} {where}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, m.group(), pos + 1))
        pos = m.end()
    return tokens


# --- parser -------------------------------------------------------------------------------------------------


class _UnknownAttribute(InvalidFilter):
    pass


# Public for the root search: a filter naming an attribute one resource type lacks selects none of that type.
UnknownFilterAttribute = _UnknownAttribute


class _Parser:
    """Recursive descent: or_expr := and_expr ("or" and_expr)*; and_expr := unary ("and" unary)*;
    unary := "not" "(" or_expr ")" | "(" or_expr ")" | attrExp | valuePath."""

    def __init__(self, text: str, rtype: ResourceType, what: str) -> None:
        if len(text) > MAX_LENGTH:
            raise InvalidFilter(f"Invalid {what}: longer than {MAX_LENGTH} characters")
        self.rtype, self.what = rtype, what
        self.tokens = _tokenize(text)
        self.i = self.depth = self.terms = 0

    def fail(self, msg: str, tok: _Tok | None = None, cls: type[InvalidFilter] = InvalidFilter) -> NoReturn:
        where = f"at position {tok.pos}" if tok else "at the end"
        raise cls(f"Invalid {self.what}: {msg} {where}")

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str) -> _Tok:
        tok = self.peek()
        if tok is None:
            self.fail(f"expected {expected}")
        self.i += 1
        return tok

    def expect(self, punct: str, opened: _Tok) -> None:
        tok = self.peek()
        if tok is None or tok.text != punct:
            self.fail(f"expected '{punct}' to close '{opened.text}' at position {opened.pos}", tok)
        self.i += 1

    def nest(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"nested deeper than {MAX_DEPTH} levels", tok)

    def end(self) -> None:
        tok = self.peek()
        if tok is not None:
            self.fail(f"unexpected '{tok.text}'", tok)

    def or_expr(self, scope: AttrRef | None) -> Expr:
        expr = self.and_expr(scope)
        while (tok := self.peek()) is not None and tok.is_word("or"):
            self.i += 1
            expr = Or(expr, self.and_expr(scope))
        return expr

    def and_expr(self, scope: AttrRef | None) -> Expr:
        expr = self.unary(scope)
        while (tok := self.peek()) is not None and tok.is_word("and"):
            self.i += 1
            expr = And(expr, self.unary(scope))
        return expr

    def unary(self, scope: AttrRef | None) -> Expr:
        tok = self.take("an expression")
        if tok.is_word("not"):
            opened = self.peek()
            if opened is None or opened.text != "(":
                self.fail("expected '(' after 'not'", opened)
            self.i += 1
            return Not(self.group(scope, opened))
        if tok.text == "(":
            return self.group(scope, tok)
        if tok.kind != "word":
            self.fail(f"expected an attribute name, got '{tok.text}'", tok)
        return self.attr_expr(tok, scope)

    def group(self, scope: AttrRef | None, opened: _Tok) -> Expr:
        self.nest(opened)
        expr = self.or_expr(scope)
        self.expect(")", opened)
        self.depth -= 1
        return expr

    def attr(self, tok: _Tok, scope: AttrRef | None) -> AttrRef:
        """Resolve a name: a resource attribute, or inside `emails[...]` a sub-attribute of `emails`."""
        if scope is None:
            ref = resolve(self.rtype, tok.text)
        else:
            sub = scope.attr.sub(tok.text)
            ref = AttrRef(scope.schema, scope.attr, sub) if sub else resolve(self.rtype, tok.text)
            if ref is not None and (ref.attr != scope.attr or ref.sub is None):
                self.fail(f"'{tok.text}' is not a sub-attribute of '{scope}'", tok)
        if ref is None:
            self.fail(f"unknown attribute '{tok.text}'", tok, _UnknownAttribute)
        return ref

    def bracket(self, ref: AttrRef, opened: _Tok) -> Expr:
        """After `attr[`: the valFilter and `]`, with names relative to `ref`."""
        if ref.sub is not None or ref.attr.type != "complex":
            self.fail(f"'{ref}' is not a complex attribute, '[' cannot follow it", opened)
        self.i += 1
        self.nest(opened)
        expr = self.or_expr(ref)
        self.expect("]", opened)
        self.depth -= 1
        return expr

    def sub_after_bracket(self, ref: AttrRef) -> AttrRef | None:
        """The `.value` of `emails[...].value`, if there."""
        tok = self.peek()
        if tok is None or tok.kind != "sub":
            return None
        self.i += 1
        sub = ref.attr.sub(tok.text[1:])
        if sub is None:
            self.fail(f"unknown sub-attribute '{tok.text[1:]}' of '{ref}'", tok, _UnknownAttribute)
        return AttrRef(ref.schema, ref.attr, sub)

    def attr_expr(self, tok: _Tok, scope: AttrRef | None) -> Expr:
        ref = self.attr(tok, scope)
        opened = self.peek()
        if opened is None or opened.text != "[":
            return self.comparison(ref, tok)
        if scope is not None:
            self.fail("a valuePath cannot be nested in another", opened)
        inner = self.bracket(ref, opened)
        sub = self.sub_after_bracket(ref)
        if sub is None:
            return ValuePath(ref, inner)
        return ValuePath(ref, And(inner, self.comparison(sub, tok)))

    def comparison(self, ref: AttrRef, name: _Tok) -> Expr:
        op_tok = self.take(f"an operator after '{name.text}'")
        op = op_tok.text.lower()
        if op_tok.kind != "word" or (op != "pr" and op not in COMPARE_OPS):
            self.fail(f"expected an operator (eq ne co sw ew gt ge lt le pr), got '{op_tok.text}'", op_tok)
        if ref.target.returned == "never" or ref.attr.returned == "never":  # no oracle on `password`
            self.fail(f"'{ref}' cannot be filtered on", name)
        self.terms += 1
        if self.terms > MAX_TERMS:
            self.fail(f"more than {MAX_TERMS} comparisons", op_tok)
        if op == "pr":
            nxt = self.peek()
            if nxt is not None and (nxt.kind in ("string", "number") or nxt.is_word(*_LITERALS)):
                self.fail("'pr' takes no value", nxt)
            return Present(ref)
        value_tok = self.take(f"a value after '{op_tok.text}'")
        value = self.literal(value_tok, op_tok)
        try:
            ref = comparable(ref)
            return Compare(ref, op, check_compare(ref, op, value))
        except InvalidFilter as e:
            self.fail(e.detail.removeprefix("Invalid filter: "), op_tok)

    def literal(self, tok: _Tok, op_tok: _Tok) -> Value:
        if tok.kind == "string":
            # Strict JSON: a raw control character is not valid in a string (write \n, \u0001, ...).
            try:
                value: str = json.loads(tok.text)
            except ValueError:
                self.fail("invalid escape or raw control character in string", tok)
            why = unstorable(value)
            if why is not None:
                self.fail(f"string contains {why}", tok)
            if len(value) > MAX_VALUE_LENGTH:
                self.fail(f"string longer than {MAX_VALUE_LENGTH} characters (no stored value is)", tok)
            return value
        if tok.kind == "number":
            return float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
        if tok.is_word(*_LITERALS):
            return _LITERALS[tok.text.lower()]
        self.fail(f"expected a value (string, number, true, false or null) after '{op_tok.text}'", tok)


def parse_filter(text: str, rtype: ResourceType = USER_TYPE) -> Expr:
    """Parse a `filter` query parameter (RFC 7644 §3.4.2.2). Raises InvalidFilter saying what is wrong and where."""
    parser = _Parser(text, rtype, "filter")
    if not parser.tokens:
        raise InvalidFilter("Invalid filter: empty filter")
    expr = parser.or_expr(None)
    parser.end()
    return expr


def parse_path(text: str, rtype: ResourceType = USER_TYPE) -> Path:
    """Parse a PATCH `path` (RFC 7644 §3.5.2): PATH = attrPath / valuePath [subAttr]. Raises InvalidPath."""
    try:
        parser = _Parser(text, rtype, "path")
        tok = parser.take("an attribute name")
        if tok.kind != "word":
            parser.fail(f"expected an attribute name, got '{tok.text}'", tok)
        ref = parser.attr(tok, None)
        flt: Expr | None = None
        opened = parser.peek()
        if opened is not None and opened.text == "[":
            flt = parser.bracket(ref, opened)
            ref = parser.sub_after_bracket(ref) or ref
        parser.end()
        return Path(ref, flt)
    except _UnknownAttribute as e:
        raise UnknownPathAttribute(e.detail) from None
    except InvalidFilter as e:
        raise InvalidPath(e.detail.replace("Invalid filter:", "Invalid path:")) from None
