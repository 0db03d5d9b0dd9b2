"""The local development stack: never deployed (see .funcignore).

Azurite (pinned npm package), the Batch REST emulator, the dev Functions host
and the one-command run live here, apart from the app's own `shared/` package.
"""
