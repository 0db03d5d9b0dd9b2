"""OData query options of Batch list operations: `$filter` (lark grammar), `$select` projection, paging.

Filter support follows "OData filters in Batch" (learn.microsoft.com/rest/api/batchservice/odata-filters-in-batch):
each list operation accepts a fixed set of properties with fixed operators; anything else is answered with
400 InvalidQueryParameterValue naming $filter, its value and the reason. Literals: 'strings' ('' escapes a quote),
integers, DateTime'2024-05-01T00:00:00Z', true/false. Conditions combine with and/or/parentheses.
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import urlencode

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import LarkError, VisitError

from . import errors
from .timeutil import parse_iso

MAX_RESULTS = 1000

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*   -> or_
?and_expr: unary (_AND unary)*       -> and_
?unary: _NOT unary                   -> not_
      | atom
?atom: "(" or_expr ")"
     | comparison
     | function
comparison: path OP literal
function: FUNC "(" path "," literal ")"
path: NAME ("/" NAME)*
?literal: STRING   -> string
        | DATETIME -> datetime
        | NUMBER   -> number
        | TRUE     -> true
        | FALSE    -> false
        | NULL     -> null

_OR.2: /or\b/i
_AND.2: /and\b/i
_NOT.2: /not\b/i
OP.2: /(eq|ne|gt|ge|lt|le)\b/i
FUNC.2: /(startswith|endswith|substringof)\b/i
TRUE.2: /true\b/i
FALSE.2: /false\b/i
NULL.2: /null\b/i
DATETIME.3: /datetime'[^']*'/i
STRING: /'(?:[^']|'')*'/
NUMBER: /-?\d+(\.\d+)?/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)


class Kind(Enum):
    STRING = "string"          # case-sensitive string
    ID = "id"                  # ids: case-insensitive (uniqueness is case-insensitive)
    ENUM = "enum"              # enum values: case-insensitive
    DATETIME = "datetime"
    INT = "int"
    BOOL = "bool"


@dataclass(frozen=True)
class FilterProperty:
    kind: Kind
    ops: frozenset[str]
    getter: Callable[[Mapping[str, Any]], Any]


ALL_OPS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
EQ_NE = frozenset({"eq", "ne"})


def path_getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    parts = path.split("/")

    def get(doc: Mapping[str, Any]) -> Any:
        cur: Any = doc
        for p in parts:
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(p)
        return cur
    return get


def prop(path: str, kind: Kind, ops: Iterable[str], startswith: bool = False) -> tuple[str, FilterProperty]:
    all_ops = frozenset(ops) | ({"startswith"} if startswith else frozenset())
    return path.lower(), FilterProperty(kind, all_ops, path_getter(path))


# What each list operation accepts (odata-filters-in-batch; property paths are matched case-insensitively).
TASK_FILTERS = dict([
    prop("id", Kind.ID, ALL_OPS, startswith=True),
    prop("state", Kind.ENUM, EQ_NE),
    prop("stateTransitionTime", Kind.DATETIME, ALL_OPS),
    prop("previousState", Kind.ENUM, EQ_NE),
    prop("creationTime", Kind.DATETIME, ALL_OPS),
    prop("lastModified", Kind.DATETIME, ALL_OPS),
    prop("executionInfo/startTime", Kind.DATETIME, ALL_OPS),
    prop("executionInfo/endTime", Kind.DATETIME, ALL_OPS),
    prop("executionInfo/exitCode", Kind.INT, ALL_OPS),
    prop("executionInfo/result", Kind.ENUM, EQ_NE),
    prop("executionInfo/retryCount", Kind.INT, ALL_OPS),
    prop("executionInfo/requeueCount", Kind.INT, ALL_OPS),
    prop("displayName", Kind.STRING, ALL_OPS, startswith=True),
])
# The docs name it lastModifiedTime in the filter table; the entity field is lastModified. Accept both.
TASK_FILTERS["lastmodifiedtime"] = TASK_FILTERS["lastmodified"]

JOB_FILTERS = dict([
    prop("id", Kind.ID, ALL_OPS, startswith=True),
    prop("state", Kind.ENUM, EQ_NE),
    prop("previousState", Kind.ENUM, EQ_NE),
    prop("stateTransitionTime", Kind.DATETIME, ALL_OPS),
    prop("creationTime", Kind.DATETIME, ALL_OPS),
    prop("lastModified", Kind.DATETIME, ALL_OPS),
    prop("priority", Kind.INT, ALL_OPS),
    prop("displayName", Kind.STRING, ALL_OPS, startswith=True),
    prop("executionInfo/startTime", Kind.DATETIME, ALL_OPS),
    prop("executionInfo/endTime", Kind.DATETIME, ALL_OPS),
    prop("executionInfo/poolId", Kind.ID, EQ_NE),
    prop("poolInfo/poolId", Kind.ID, EQ_NE),
])
POOL_FILTERS = dict([
    prop("id", Kind.ID, ALL_OPS, startswith=True),
    prop("state", Kind.ENUM, EQ_NE),
    prop("allocationState", Kind.ENUM, EQ_NE),
    prop("stateTransitionTime", Kind.DATETIME, ALL_OPS),
    prop("allocationStateTransitionTime", Kind.DATETIME, ALL_OPS),
    prop("creationTime", Kind.DATETIME, ALL_OPS),
    prop("lastModified", Kind.DATETIME, ALL_OPS),
    prop("vmSize", Kind.ENUM, EQ_NE),
    prop("enableAutoScale", Kind.BOOL, EQ_NE),
    prop("currentDedicatedNodes", Kind.INT, ALL_OPS),
    prop("currentLowPriorityNodes", Kind.INT, ALL_OPS),
    prop("targetDedicatedNodes", Kind.INT, ALL_OPS),
    prop("targetLowPriorityNodes", Kind.INT, ALL_OPS),
    prop("displayName", Kind.STRING, ALL_OPS, startswith=True),
])
NODE_FILTERS = dict([
    prop("id", Kind.ID, EQ_NE, startswith=True),
    prop("state", Kind.ENUM, EQ_NE),
    prop("schedulingState", Kind.ENUM, EQ_NE),
    prop("isDedicated", Kind.BOOL, EQ_NE),
    prop("stateTransitionTime", Kind.DATETIME, ALL_OPS),
])
NODE_COUNT_FILTERS = dict([prop("poolId", Kind.ID, EQ_NE, startswith=True)])

Predicate = Callable[[Mapping[str, Any]], bool]


class _FilterError(Exception):
    pass


@dataclass(frozen=True)
class _Literal:
    kind: str
    value: Any
    text: str


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if left is None or right is None:
        return False
    if op == "gt":
        return left > right
    if op == "ge":
        return left >= right
    if op == "lt":
        return left < right
    return left <= right


@v_args(inline=True)
class _Compiler(Transformer):
    def __init__(self, properties: Mapping[str, FilterProperty]) -> None:
        super().__init__()
        self._props = properties

    def string(self, tok: Token) -> _Literal:
        return _Literal("string", tok[1:-1].replace("''", "'"), str(tok))

    def datetime(self, tok: Token) -> _Literal:
        raw = tok[tok.index("'") + 1:-1]
        try:
            return _Literal("datetime", parse_iso(raw), str(tok))
        except ValueError:
            raise _FilterError(f"'{raw}' is not a valid DateTime literal") from None

    def number(self, tok: Token) -> _Literal:
        return _Literal("number", float(tok) if "." in tok else int(tok), str(tok))

    def true(self, tok: Token) -> _Literal:
        return _Literal("bool", True, "true")

    def false(self, tok: Token) -> _Literal:
        return _Literal("bool", False, "false")

    def null(self, tok: Token) -> _Literal:
        return _Literal("null", None, "null")

    def path(self, *names: Token) -> str:
        return "/".join(str(n) for n in names)

    def _property(self, path: str, op: str) -> FilterProperty:
        p = self._props.get(path.lower())
        if p is None:
            raise _FilterError(f"The property '{path}' is not supported in $filter for this operation")
        if op not in p.ops:
            raise _FilterError(f"The operator '{op}' is not supported for the property '{path}'")
        return p

    def _coerce(self, path: str, p: FilterProperty, lit: _Literal) -> Any:
        if lit.kind == "null":
            return None
        if p.kind in (Kind.STRING, Kind.ID, Kind.ENUM):
            if lit.kind != "string":
                raise _FilterError(f"The property '{path}' must be compared with a quoted string")
            return lit.value if p.kind is Kind.STRING else lit.value.lower()
        if p.kind is Kind.DATETIME:
            if lit.kind == "datetime":
                return lit.value
            if lit.kind == "string":  # tolerate '2024-01-01T00:00:00Z' without the DateTime prefix
                try:
                    return parse_iso(lit.value)
                except ValueError:
                    pass
            raise _FilterError(f"The property '{path}' must be compared with a DateTime'...' literal")
        if p.kind is Kind.INT:
            if lit.kind != "number":
                raise _FilterError(f"The property '{path}' must be compared with a number")
            return lit.value
        if lit.kind != "bool":
            raise _FilterError(f"The property '{path}' must be compared with true or false")
        return lit.value

    @staticmethod
    def _reader(p: FilterProperty) -> Callable[[Mapping[str, Any]], Any]:
        get = p.getter
        if p.kind in (Kind.ID, Kind.ENUM):
            return lambda d: (v.lower() if isinstance(v := get(d), str) else v)
        if p.kind is Kind.DATETIME:
            return lambda d: (_cached_iso(v) if isinstance(v := get(d), str) else None)
        return get

    def comparison(self, path: str, op_tok: Token, lit: _Literal) -> Predicate:
        op = op_tok.lower()
        p = self._property(path, op)
        right = self._coerce(path, p, lit)
        read = self._reader(p)
        return lambda d: _compare(op, read(d), right)

    def function(self, func_tok: Token, path: str, lit: _Literal) -> Predicate:
        func = func_tok.lower()
        p = self._property(path, func)
        right = self._coerce(path, p, lit)
        if not isinstance(right, str):
            raise _FilterError(f"{func} needs a string literal")
        read = self._reader(p)
        return lambda d: isinstance(v := read(d), str) and v.startswith(right)

    def and_(self, *preds: Predicate) -> Predicate:
        return lambda d: all(p(d) for p in preds)

    def or_(self, *preds: Predicate) -> Predicate:
        return lambda d: any(p(d) for p in preds)

    def not_(self, pred: Predicate) -> Predicate:
        return lambda d: not pred(d)


@functools.lru_cache(maxsize=65536)
def _cached_iso(text: str) -> datetime:
    return parse_iso(text)


def _invalid_filter(text: str, reason: str) -> errors.BatchError:
    return errors.invalid_query_parameter("$filter", text, reason)


@functools.lru_cache(maxsize=256)
def _compile_cached(text: str, table_id: int) -> Predicate:
    properties = _TABLES[table_id]
    try:
        tree = _PARSER.parse(text)
        result = _Compiler(properties).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, _FilterError):
            raise _invalid_filter(text, str(exc.orig_exc)) from None
        raise
    except _FilterError as exc:
        raise _invalid_filter(text, str(exc)) from None
    except LarkError as exc:
        raise _invalid_filter(text, f"The $filter clause could not be parsed: {type(exc).__name__}") from None
    return result


_TABLES: dict[int, Mapping[str, FilterProperty]] = {}
for _t in (TASK_FILTERS, JOB_FILTERS, POOL_FILTERS, NODE_FILTERS, NODE_COUNT_FILTERS):
    _TABLES[id(_t)] = _t


@dataclass(frozen=True)
class Shortcuts:
    """What a filter's top-level conjunction requires of `stateTransitionTime` and `state` (None: nothing).
    Lets a list read a job's indexes for its candidates; the compiled filter still decides, so these only
    ever narrow a superset."""

    since: datetime | None = None     # stateTransitionTime ge|gt (the latest such bound)
    before: datetime | None = None    # stateTransitionTime lt|le (the earliest)
    state: str | None = None          # state eq '...' (lower case)


@functools.lru_cache(maxsize=256)
def shortcuts(text: str | None) -> Shortcuts:
    """Call after compile_filter (which rejects invalid filters); anything unrecognised is no shortcut."""
    if text is None or not text.strip():
        return Shortcuts()
    try:
        tree = _PARSER.parse(text)
    except LarkError:
        return Shortcuts()
    since: datetime | None = None
    before: datetime | None = None
    state: str | None = None
    pending = [tree]
    while pending:
        node = pending.pop()
        if not isinstance(node, Tree):
            continue
        if node.data == "and_" or (node.data == "or_" and len(node.children) == 1):
            pending.extend(node.children)
            continue
        if node.data != "comparison":
            continue
        name, op_token, literal = node.children
        path, op = "/".join(str(t) for t in name.children).lower(), str(op_token).lower()
        if not isinstance(literal, Tree) or not literal.children:
            continue
        raw = str(literal.children[0])
        if path == "state" and op == "eq" and literal.data == "string":
            state = raw[1:-1].replace("''", "'").lower()
        elif path == "statetransitiontime" and literal.data == "datetime":
            try:
                moment = parse_iso(raw[raw.index("'") + 1:-1])
            except ValueError:
                continue
            if op in ("ge", "gt"):
                since = moment if since is None or moment > since else since
            elif op in ("lt", "le"):
                before = moment if before is None or moment < before else before
    return Shortcuts(since, before, state)


def compile_filter(text: str | None, properties: Mapping[str, FilterProperty]) -> Predicate | None:
    """Compile a $filter into a predicate over wire documents; None/blank means "everything"."""
    if text is None or not text.strip():
        return None
    if id(properties) not in _TABLES:
        _TABLES[id(properties)] = properties
    return _compile_cached(text, id(properties))


# --- $select ------------------------------------------------------------------------------------------------

def parse_select(text: str | None, known: Iterable[str]) -> tuple[str, ...] | None:
    """Top-level property names to keep, validated against the entity's properties (case-insensitive)."""
    if text is None or not text.strip():
        return None
    by_lower = {k.lower(): k for k in known}
    out = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        canonical = by_lower.get(name.lower())
        if canonical is None:
            raise errors.invalid_query_parameter("$select", text, f"The property '{name}' does not exist")
        out.append(canonical)
    return tuple(out)


def project(doc: Mapping[str, Any], select: Sequence[str] | None) -> dict[str, Any]:
    if select is None:
        return dict(doc)
    return {k: doc[k] for k in select if k in doc}


# --- paging -------------------------------------------------------------------------------------------------

def parse_max_results(raw: str | None) -> int:
    if raw is None or raw == "":
        return MAX_RESULTS
    try:
        value = int(raw)
    except ValueError:
        raise errors.invalid_query_parameter("maxresults", raw, "maxresults must be an integer") from None
    if not (1 <= value <= MAX_RESULTS):
        raise errors.out_of_range_query_parameter("maxresults", raw, f"maxresults must be between 1 and {MAX_RESULTS}")
    return value


def encode_skiptoken(position: int) -> str:
    raw = json.dumps({"after": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_skiptoken(token: str | None) -> int | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = value["after"]
        if not isinstance(position, int):
            raise ValueError
        return position
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
        raise errors.invalid_query_parameter("$skiptoken", token, "The continuation token is not valid") from None


def next_link(base_url: str, path: str, api_version: str, params: Mapping[str, str | None], position: int) -> str:
    """Absolute nextLink carrying every query option: the SDK sends only what is in it on later pages."""
    query = {"api-version": api_version}
    query.update({k: v for k, v in params.items() if v not in (None, "")})
    query["$skiptoken"] = encode_skiptoken(position)
    return f"{base_url}{path}?{urlencode(query)}"


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_position: int | None  # position to continue after, None when this is the last page


def paginate(rows: Iterable[tuple[int, Mapping[str, Any]]], predicate: Predicate | None, after: int | None,
             limit: int, select: Sequence[str] | None) -> Page:
    """rows: (position, doc) in ascending position order. Returns up to `limit` matches after `after`."""
    items: list[dict[str, Any]] = []
    last = None
    for position, doc in rows:
        if after is not None and position <= after:
            continue
        if predicate is not None and not predicate(doc):
            continue
        if len(items) == limit:
            return Page(items, last)
        items.append(project(doc, select))
        last = position
    return Page(items, None)
