"""The public-formula scenario (devstack/compat/formulas.py): the set itself, and every formula through azure-batch
against the emulator, compared with the service's recorded answers and with the engine run in process."""
from __future__ import annotations

from datetime import timedelta

from devstack.batch_emulator import autoscale
from devstack.compat.formulas import FORMULAS, RECORDED, run_in_process, run_through_sdk, totals


def test_the_set_names_a_source_for_every_formula_and_parses():
    assert len(FORMULAS) >= 25
    assert len({f.key for f in FORMULAS}) == len(FORMULAS)
    for formula in FORMULAS:
        assert len(formula.source.strip()) > 20, formula.key
        autoscale.compile_formula(formula.text)  # raises on a syntax error
    recorded = [f for f in FORMULAS if f.known is not None]
    assert len(recorded) >= 6 and all(f.known.record for f in recorded)


def test_through_the_sdk_every_recorded_answer_is_reproduced_and_matches_the_engine(batch_emulator_module):
    emu = batch_emulator_module
    client = emu.client()
    through_sdk = [run_through_sdk(client, emu.url, f, pool_id=f"fx{i}") for i, f in enumerate(FORMULAS)]
    in_process = [run_in_process(autoscale, f) for f in FORMULAS]
    assert all(o.parsed for o in through_sdk)
    wrong = [(o.key, o.describe()) for o in through_sdk if o.correct is False]
    assert wrong == []
    t = totals(through_sdk)
    assert t["correct"] == t["known"] >= 5
    # The SDK path and the engine agree case by case (results with clock readings aside).
    for sdk, local in zip(through_sdk, in_process):
        assert (sdk.evaluated, sdk.error_code) == (local.evaluated, local.error_code), sdk.key
        if "time()" not in FORMULAS[[f.key for f in FORMULAS].index(sdk.key)].text:
            assert sdk.results == local.results, sdk.key


def test_a_record_that_needs_a_shorter_lag_is_judged_only_there():
    (record,) = [f for f in FORMULAS if f.situation == RECORDED]
    assert run_in_process(autoscale, record).correct is None                               # 60 s: not applicable
    assert run_in_process(autoscale, record, lag=timedelta(seconds=30)).correct is True    # 29 of 30 visible
