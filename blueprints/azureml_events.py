"""The Azure Machine Learning workspace's events (Event Grid): a job of the app's ended -> its run goes on (gate,
deployment), as a landed `.ilearner` does for Studio (classic). Delivery is at least once and out of order; the run's
state decides what an event still means, and reconcile's polling is the safety net."""

from __future__ import annotations

import logging

import azure.functions as func

from blueprints.runtime import invocation, retraining

bp = func.Blueprint()
log = logging.getLogger("blueprints.azureml")
JOB_EVENTS = ("Microsoft.MachineLearningServices.RunCompleted", "Microsoft.MachineLearningServices.RunStatusChanged")


@bp.function_name("azureml_job_event")
@bp.event_grid_trigger(arg_name="event")
def azureml_job_event(event: func.EventGridEvent, context: func.Context) -> None:
    with invocation(context):
        data = event.get_json() if isinstance(event.get_json(), dict) else {}
        if event.event_type not in JOB_EVENTS or not data.get("runId"):
            log.info("ignored event %s (%s)", event.event_type, event.subject)
            return
        result = retraining().promotion.on_job_event(str(data["runId"]), data.get("runStatus"))
        if result is not None:
            log.info("job %s: run %s %s %s", data["runId"], result.run_id, result.status, result.reason or "")
