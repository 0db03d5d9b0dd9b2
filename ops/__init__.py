"""Operator tools: the service's state (ledger files, pool, failures) and resubmitting failed inputs.

They work locally (against Azurite and the Batch emulator) and against Azure, with the function
app's own settings, clients and submit path (`shared`). Not deployed with the function app.
Run them as `./dev status ...` or `python -m ops status ...`.
"""
