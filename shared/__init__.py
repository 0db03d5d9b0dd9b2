"""The app's own package: settings, Batch submission, ledger, reconciler. Deployed with function_app.py."""
