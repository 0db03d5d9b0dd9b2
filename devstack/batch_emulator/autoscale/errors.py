"""Errors of the autoscale formula language, shaped like the service's ``autoScaleRun.error``.

Sources for the codes and texts (``AutoScaleRunError`` has ``code``, ``message`` and
``values`` = list of ``{name, value}``):

* ``AutoScalingFormulaSyntaxError`` and ``AutoScaleFormulaTooLong`` ("The maximum length is
  8192 characters"): ``BatchErrorCodeStrings`` of the .NET SDKs (Azure/azure-sdk-for-net,
  Microsoft.Azure.Batch and Azure.Compute.Batch). The messages are the "User message"
  column of the REST "Batch Status and Error Codes" table (MicrosoftDocs, 2017) - that
  table spells the length code ``AutoScalingFormulaTooLong``; we follow the SDK constants
  because clients match on them.
* ``AutoScalingFormulaEvaluationError``: asserted by azure-sdk-for-js recorded tests
  (sdk/batch/batch-rest and sdk/batch/batch, "should fail to evaluate invalid autoscale
  formula" with ``$something_useless``). Its message text is NOT verified.
* ``InsufficientSampleData`` with message "Autoscale evaluation failed due to insufficient
  sample data" and ``values=[{"name": "Message", "value": "Line 15, Col 44: Insufficient
  data from data set: $RunningTasks wanted 70%, received 50%"}]``: MicrosoftDocs
  batch-pool-autoscale-event.md and the REST "Evaluate an automatic scaling formula" page.
  The "Line L, Col C: detail" value shape is reused for every error with a position;
  that reuse is an assumption.
"""
from __future__ import annotations

from dataclasses import dataclass

SYNTAX_ERROR = "AutoScalingFormulaSyntaxError"
FORMULA_TOO_LONG = "AutoScaleFormulaTooLong"
EVALUATION_ERROR = "AutoScalingFormulaEvaluationError"
INSUFFICIENT_SAMPLE_DATA = "InsufficientSampleData"

_MESSAGES = {
    SYNTAX_ERROR: "The specified auto-scaling formula has a syntax error.",
    FORMULA_TOO_LONG: "The specified auto-scaling formula exceeds lengths limit.",
    # Unverified wording, modelled on the verified InsufficientSampleData message.
    EVALUATION_ERROR: "Autoscale evaluation failed due to an error in the formula",
    INSUFFICIENT_SAMPLE_DATA: "Autoscale evaluation failed due to insufficient sample data",
}


class AutoScaleError(Exception):
    """A compile or evaluation failure, carrying what the service puts in ``autoScaleRun.error``.

    ``results`` is the ``autoScaleRun.results`` string at the point of failure for evaluation
    errors (the service still reports results next to the error: azure-sdk-for-js test
    expects ``$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue``
    with ``AutoScalingFormulaEvaluationError``); ``None`` for compile errors.
    """

    def __init__(
        self,
        code: str,
        message: str,
        values: list[tuple[str, str]] | None = None,
        results: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.values: list[tuple[str, str]] = list(values or [])
        self.results = results
        detail = "; ".join(value for _, value in self.values)
        super().__init__(f"{code}: {message}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class Position:
    """1-based line and column in the formula text."""

    line: int
    column: int

    def describe(self, detail: str) -> str:
        return f"Line {self.line}, Col {self.column}: {detail}"


class FormulaFault(Exception):
    """Internal: a positioned failure raised while compiling or evaluating."""

    def __init__(self, code: str, position: Position | None, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.position = position
        self.detail = detail

    def to_error(self, results: str | None = None) -> AutoScaleError:
        text = self.position.describe(self.detail) if self.position else self.detail
        return AutoScaleError(self.code, _MESSAGES[self.code], [("Message", text)], results)


def evaluation_fault(position: Position | None, detail: str) -> FormulaFault:
    return FormulaFault(EVALUATION_ERROR, position, detail)
