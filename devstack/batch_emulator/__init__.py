"""Local Azure Batch data-plane emulator (never deployed)."""
