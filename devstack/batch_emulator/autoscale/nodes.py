"""Syntax tree of a compiled formula. Every node knows where it starts in the text."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import Position


@dataclass(frozen=True)
class Node:
    position: Position


@dataclass(frozen=True)
class Number(Node):
    value: float


@dataclass(frozen=True)
class String(Node):
    value: str


@dataclass(frozen=True)
class Variable(Node):
    name: str


@dataclass(frozen=True)
class VectorLiteral(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Unary(Node):
    operator: str  # "-" or "!"
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    operator: str  # + - * / < <= == >= > != && ||
    left: Node
    right: Node


@dataclass(frozen=True)
class Conditional(Node):
    condition: Node
    when_true: Node
    when_false: Node


@dataclass(frozen=True)
class FunctionCall(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class MethodCall(Node):
    target: Node
    name: str
    args: tuple[Node, ...]
    # Where the argument list opens: the service reports InsufficientSampleData there
    # (batch-shipyard#138: "Line 9, Col 43" is the "(" after "$PendingTasks.GetSample").
    arguments_position: Position | None = None


@dataclass(frozen=True)
class Member(Node):
    target: Node
    name: str


@dataclass(frozen=True)
class Assignment(Node):
    name: str
    value: Node


@dataclass(frozen=True)
class ExpressionStatement(Node):
    value: Node


Statement = Assignment | ExpressionStatement
