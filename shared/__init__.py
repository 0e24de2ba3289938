"""The retraining library: everything the function app does, testable without the Functions host.

No module here imports azure.functions; the blueprints turn a binding into a call of `shared.pipeline`.
"""
