"""The durable engine: ledger, stores, scheduler (see later work)."""
