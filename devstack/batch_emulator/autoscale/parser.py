"""Compile formula text into a syntax tree with a lark LALR grammar.

Limits (doc "Automatic scaling formulas"): at most 8 KB - 8192 characters per the SDK's
``AutoScaleFormulaTooLong`` docstring - and up to 100 statements separated by semicolons;
line breaks and ``//`` comments are allowed. A missing semicolon between statements is a
syntax error (newlines do not separate statements; cf. UCL/TLOmodel PR #1220 "Fix missing
semicolon in autoscale formula").

Name resolution happens at evaluation time, not here: the service accepts
``$something_useless`` as a formula and fails it with AutoScalingFormulaEvaluationError
(azure-sdk-for-js recorded test), so unknown variables are not syntax errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import nodes
from .errors import FORMULA_TOO_LONG, SYNTAX_ERROR, AutoScaleError, FormulaFault, Position

MAX_FORMULA_CHARS = 8192
MAX_STATEMENTS = 100

# C-like precedence, loosest first: ?: || && (== !=) (< <= >= >) (+ -) (* /) unary postfix.
_GRAMMAR = r"""
start: _slot (";" _slot)*
_slot: statement?

statement: NAME "=" expr                      -> assign
         | expr                               -> expression_statement

?expr: or_expr
     | or_expr "?" expr ":" expr              -> conditional

?or_expr: and_expr
        | or_expr "||" and_expr               -> or_op
?and_expr: eq_expr
         | and_expr "&&" eq_expr              -> and_op
?eq_expr: rel_expr
        | eq_expr "==" rel_expr               -> eq
        | eq_expr "!=" rel_expr               -> ne
?rel_expr: add_expr
         | rel_expr "<" add_expr              -> lt
         | rel_expr "<=" add_expr             -> le
         | rel_expr ">" add_expr              -> gt
         | rel_expr ">=" add_expr             -> ge
?add_expr: mul_expr
         | add_expr "+" mul_expr              -> add
         | add_expr "-" mul_expr              -> sub
?mul_expr: unary
         | mul_expr "*" unary                 -> mul
         | mul_expr "/" unary                 -> div
?unary: postfix
      | "-" unary                             -> neg
      | "!" unary                             -> not_op
?postfix: primary
        | postfix "." NAME "(" [args] ")"     -> method_call
        | postfix "." NAME                    -> member
?primary: NUMBER                              -> number
        | STRING                              -> string
        | NAME                                -> variable
        | NAME "(" [args] ")"                 -> function_call
        | "{" [args] "}"                      -> vector
        | "(" expr ")"

args: expr ("," expr)*

NAME: /\$?[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/
STRING: /"[^"\n]*"/
COMMENT: /\/\/[^\n]*/

%import common.WS
%ignore WS
%ignore COMMENT
"""

_BINARY_OPERATORS = {
    "or_op": "||",
    "and_op": "&&",
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "add": "+",
    "sub": "-",
    "mul": "*",
    "div": "/",
}


@dataclass(frozen=True)
class Formula:
    """A compiled formula: the original text and its statements in order."""

    text: str
    statements: tuple[nodes.Statement, ...]


def _position(meta_or_token) -> Position:
    return Position(meta_or_token.line, meta_or_token.column)


def _args(children) -> tuple[nodes.Node, ...]:
    # ``[args]`` yields None when absent (lark maybe_placeholders).
    return tuple(children) if children is not None else ()


@v_args(meta=True)
class _ToNodes(Transformer):
    def start(self, meta, children):
        return tuple(children)

    def assign(self, meta, children):
        name, value = children
        return nodes.Assignment(_position(name), str(name), value)

    def expression_statement(self, meta, children):
        (value,) = children
        return nodes.ExpressionStatement(value.position, value)

    def conditional(self, meta, children):
        condition, when_true, when_false = children
        return nodes.Conditional(condition.position, condition, when_true, when_false)

    def neg(self, meta, children):
        return nodes.Unary(_position(meta), "-", children[0])

    def not_op(self, meta, children):
        return nodes.Unary(_position(meta), "!", children[0])

    def method_call(self, meta, children):
        target, name, args = children
        # The "(" right after the method name (Token.end_column is one past its last character).
        opening = Position(name.end_line, name.end_column)
        return nodes.MethodCall(target.position, target, str(name), _args(args), opening)

    def member(self, meta, children):
        target, name = children
        return nodes.Member(target.position, target, str(name))

    def number(self, meta, children):
        (token,) = children
        return nodes.Number(_position(token), float(token))

    def string(self, meta, children):
        (token,) = children
        return nodes.String(_position(token), str(token)[1:-1])

    def variable(self, meta, children):
        (token,) = children
        return nodes.Variable(_position(token), str(token))

    def function_call(self, meta, children):
        name, args = children
        return nodes.FunctionCall(_position(name), str(name), _args(args))

    def vector(self, meta, children):
        (args,) = children
        return nodes.VectorLiteral(_position(meta), _args(args))

    def args(self, meta, children):
        return list(children)

    def __default__(self, data, children, meta):
        operator = _BINARY_OPERATORS.get(data)
        if operator is None:  # pragma: no cover - every rule has a handler
            raise AssertionError(f"unhandled grammar rule {data}")
        left, right = children
        return nodes.Binary(left.position, operator, left, right)


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _describe_parse_error(error: UnexpectedInput, text: str) -> FormulaFault:
    if isinstance(error, UnexpectedEOF) or (
        isinstance(error, UnexpectedToken) and error.token.type == "$END"
    ):
        position = Position(text.count("\n") + 1, len(text) - text.rfind("\n"))
        return FormulaFault(SYNTAX_ERROR, position, "Unexpected end of formula")
    if isinstance(error, UnexpectedToken):
        token: Token = error.token
        return FormulaFault(SYNTAX_ERROR, Position(error.line, error.column), f"Unexpected '{token}'")
    if isinstance(error, UnexpectedCharacters):
        character = text[error.pos_in_stream]
        return FormulaFault(
            SYNTAX_ERROR, Position(error.line, error.column), f"Unexpected character '{character}'"
        )
    return FormulaFault(SYNTAX_ERROR, None, str(error))  # pragma: no cover - lark has no others


def compile_formula(text: str) -> Formula:
    """Parse ``text``; raise AutoScaleError (syntax or length) if the service would reject it."""
    if len(text) > MAX_FORMULA_CHARS:
        raise AutoScaleError(
            FORMULA_TOO_LONG,
            "The specified auto-scaling formula exceeds lengths limit.",
            [("Message", f"The formula is {len(text)} characters long; the limit is {MAX_FORMULA_CHARS}")],
        )
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as error:
        raise _describe_parse_error(error, text).to_error() from None
    statements = _ToNodes().transform(tree)
    if len(statements) > MAX_STATEMENTS:
        # The doc states the limit but not the error; reported as a syntax error (unverified).
        raise FormulaFault(
            SYNTAX_ERROR,
            statements[MAX_STATEMENTS].position,
            f"The formula has {len(statements)} statements; the limit is {MAX_STATEMENTS}",
        ).to_error()
    return Formula(text, statements)
