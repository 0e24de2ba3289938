"""The retraining library: everything the function app does, testable without the Functions host.

No module here imports azure.functions; the blueprints turn a binding into a call of a use case, which they take
from `shared.composition`. Layers: `usecases` talk to `ports` and use `decisions`, `records`, `events`, `gate`;
`adapters` implement the ports (Azure Storage, Event Grid, Studio (classic)); `composition` wires them.
"""
