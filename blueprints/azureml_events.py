"""The Azure Machine Learning workspace's events (Event Grid): a job of the app's ended -> its run goes on (gate,
deployment), as a landed `.ilearner` does for Studio (classic). The delivery is answered at once: the work (minutes
on Azure ML: a deployment, traffic steps) goes to the work queue, whose trigger carries it out (Event Grid waits
30 s for an answer, then delivers again). Delivery is at least once and out of order; the run's state decides what
an event still means, and reconcile's polling is the safety net."""

from __future__ import annotations

import logging

import azure.functions as func

from blueprints.runtime import invocation, retraining
from shared.usecases.promotion import ENDED_JOB_STATUSES

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
        status = data.get("runStatus") or ("Completed" if event.event_type.endswith("RunCompleted") else None)
        if status is not None and status not in ENDED_JOB_STATUSES:
            log.info("job %s is %s: nothing to do yet", data["runId"], status)
            return
        retraining().work_queue.send({"kind": "job", "job": str(data["runId"]), "status": status})
        log.info("job %s: it ended (%s); its run goes on through the work queue", data["runId"], status)
