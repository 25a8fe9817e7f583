"""flowledger: a durable workflow engine whose every state change is a ledger event."""
