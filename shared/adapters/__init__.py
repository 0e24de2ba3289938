"""Adapters: how the library reaches the outside world - blob storage and SAS tokens, the ledger's tables, Event
Grid, and the Studio (classic) APIs. They know nothing of the use cases."""
