"""Deployment helpers (never deployed themselves): the app packager and the Batch pool renderer."""
