"""The work queue: a training job that ended (an Azure ML workspace event, answered at once and carried out here),
a blob the host gave up on, tried again later, and (RETRAIN_FANOUT_MODE=queue) batches of endpoints to put in
service, scheduled proofs, and the tally of a run's fan-out - each message one call of the library
(shared/usecases/fanout_queue.py). A message that fails is retried by the host and moved to `retrain-work-poison`
after maxDequeueCount (host.json) tries; reconcile dispatches what such a message left unfinished.

And the host's own poison queue for blob triggers (`webjobs-blobtrigger-poison`): a file whose trigger failed
`poisonBlobThreshold` times is taken again, or recorded as not taken (shared/usecases/poisoned_blobs.py)."""

from __future__ import annotations

import logging

import azure.functions as func

from blueprints.runtime import invocation, retraining
from shared.ports.queues import WORK_QUEUE
from shared.usecases.poisoned_blobs import POISON_QUEUE

bp = func.Blueprint()
log = logging.getLogger("blueprints.queue_triggers")


@bp.function_name("fanout_work")
@bp.queue_trigger(arg_name="msg", queue_name=WORK_QUEUE, connection="AzureWebJobsStorage")
def fanout_work(msg: func.QueueMessage, context: func.Context) -> None:
    with invocation(context):
        body = msg.get_json()
        app = retraining()
        if isinstance(body, dict) and body.get("kind") == "job":  # a training job ended (blueprints/azureml_events)
            result = app.promotion.on_job_event(str(body.get("job")), body.get("status"))
            if result is not None:
                log.info("job %s: run %s %s %s", body.get("job"), result.run_id, result.status, result.reason or "")
            return
        if isinstance(body, dict) and body.get("kind") == "poisoned-blob":  # a later try (see blob_poisoned)
            app.poisoned_blobs.handle(dict(body.get("blob") or {}), int(body.get("tries") or 0),
                                      int(body.get("recordTries") or 0))
            return
        work = app.fanout_work
        assert work is not None  # the app's Retraining always has its queue
        work.handle(body)


@bp.function_name("blob_poisoned")
@bp.queue_trigger(arg_name="msg", queue_name=POISON_QUEUE, connection="AzureWebJobsStorage")
def blob_poisoned(msg: func.QueueMessage, context: func.Context) -> None:
    with invocation(context):
        try:
            body = msg.get_json()
        except ValueError:
            log.error("a message on %s that is not JSON was dropped (%d bytes)", POISON_QUEUE, len(msg.get_body()))
            return
        if not isinstance(body, dict):
            log.error("a message on %s that is not a JSON object was dropped", POISON_QUEUE)
            return
        done = retraining().poisoned_blobs.handle(body)
        log.info("poisoned blob %s/%s: %s", body.get("ContainerName"), body.get("BlobName"), done)
