"""The Azure Functions app (Python v2 model): creates the app and registers the blueprints; nothing else."""

import azure.functions as func

from blueprints import azureml_events, blob_triggers, http_api, queue_triggers, timers

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_api.bp)
app.register_functions(blob_triggers.bp)
app.register_functions(timers.bp)
app.register_functions(azureml_events.bp)
app.register_functions(queue_triggers.bp)
