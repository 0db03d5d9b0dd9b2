"""The Azure Batch autoscale formula language: compile once, evaluate per interval.

Pure Python (no I/O, no threads). Semantics follow MicrosoftDocs "Create a formula to
automatically scale compute nodes in a Batch pool" (batch-automatic-scaling.md); each module
cites what it follows and marks the unverified choices.

    formula = compile_formula(text)           # AutoScaleError on syntax / length errors
    outcome = evaluate(formula, inputs)       # AutoScaleError on evaluation errors
    outcome.target_dedicated, outcome.results ...

``AutoScaleError`` has ``code``, ``message``, ``values`` (list of (name, value) pairs, the
service's AutoScaleRunError shape) and, for evaluation errors, ``results`` - the
``autoScaleRun.results`` string at the point of failure, which the service reports too.
"""
from .errors import (
    EVALUATION_ERROR,
    FORMULA_TOO_LONG,
    INSUFFICIENT_SAMPLE_DATA,
    SYNTAX_ERROR,
    AutoScaleError,
)
from .evaluator import AutoScaleInputs, AutoScaleOutcome, evaluate
from .parser import MAX_FORMULA_CHARS, MAX_STATEMENTS, Formula, compile_formula

__all__ = [
    "AutoScaleError",
    "AutoScaleInputs",
    "AutoScaleOutcome",
    "EVALUATION_ERROR",
    "FORMULA_TOO_LONG",
    "Formula",
    "INSUFFICIENT_SAMPLE_DATA",
    "MAX_FORMULA_CHARS",
    "MAX_STATEMENTS",
    "SYNTAX_ERROR",
    "compile_formula",
    "evaluate",
]
