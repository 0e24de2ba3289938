"""Blob triggers (Event Grid source): training data landed -> validate and start the BES job; a file landed in
models/ -> promote a run's model (gate, fan-out PATCH, verify), deploy a hand-dropped one, or say why the file is
not taken. The blob arrives as a `BlobClient` (SDK-type binding) and is streamed by the library; an `InputStream`
would load the whole file into memory.

The models trigger takes every name (`models/{name}`), not only `.ilearner`: a file the app does not take must
leave a reason (rejected/, a run on the status page, a log line), and one trigger that sees the whole container
is simpler than a second function (and its own Event Grid subscription) for the rest.

An exception here makes the host retry the blob (then poison it): that is wanted only for transient failures,
which the library raises after its own retry budget. Bad input is handled - moved to `rejected/` - not raised.
"""

from __future__ import annotations

import logging

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from blueprints.runtime import invocation, retraining
from shared.records import BlobRef

bp = func.Blueprint()
log = logging.getLogger("blueprints.blobs")


@bp.function_name("training_data_landed")
@bp.blob_trigger(arg_name="client", path="training-data/{name}", connection="AzureWebJobsStorage",
                 source=func.BlobSource.EVENT_GRID)
def training_data_landed(client: blob.BlobClient, context: func.Context) -> None:
    with invocation(context):
        run = retraining().intake.accept(BlobRef(client.container_name, client.blob_name))
        if run is not None:
            log.info("%s/%s: run %s is %s", client.container_name, client.blob_name, run.id, run.status)


@bp.function_name("model_landed")
@bp.blob_trigger(arg_name="client", path="models/{name}", connection="AzureWebJobsStorage",
                 source=func.BlobSource.EVENT_GRID)
def model_landed(client: blob.BlobClient, context: func.Context) -> None:
    with invocation(context):
        result = retraining().model_landing.landed(BlobRef(client.container_name, client.blob_name))
        if result is not None:
            outcomes = ", ".join(f"{r.endpoint}={r.outcome}" for r in result.endpoints) or result.reason or ""
            log.info("%s/%s: run %s %s %s", client.container_name, client.blob_name, result.run_id, result.status,
                     outcomes)
