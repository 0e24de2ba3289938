"""In-memory fakes of every port (`shared.ports`): blob storage with versions, a ledger with etags and conditional
writes, an event sink, and a fake Studio - a training service and serving target with a switch delay and fault
rules. Use-case tests run on them in milliseconds; the contract tests (tests/contract) run the same assertions on
each fake and its real adapter, so they cannot drift apart."""
