"""Use-case tests on the in-memory fakes (tests/fakes): every use case, no services, in seconds."""
