"""The function app's blueprints: thin handlers that turn a binding into a call of the `shared` library."""
