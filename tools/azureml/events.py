"""Workspace events as Azure ML publishes them through Event Grid (event-schema-machine-learning): types
RunCompleted, RunStatusChanged, ModelRegistered, ModelDeployed, in the Event Grid event schema, `topic` the
workspace's ARM id, `dataVersion` "" and `metadataVersion` "1".

Locally they go to the emulator's Event Grid topic `azureml` (kept, readable at
`GET /admin/eventgrid/topics/azureml/events`) and to every storage-events webhook subscription whose `event_types`
name them (the same delivery as BlobCreated: validation handshake, retries, dead-lettering).
"""

from __future__ import annotations

import collections
import uuid
from typing import TYPE_CHECKING, Any

from tools.azureml.arm import now_iso
from tools.emulator.eventgrid import MAX_KEPT

if TYPE_CHECKING:
    from tools.azureml.service import AzureML

TOPIC = "azureml"
PREFIX = "Microsoft.MachineLearningServices."
TYPES = tuple(PREFIX + t for t in ("RunCompleted", "RunStatusChanged", "ModelRegistered", "ModelDeployed"))


def publish(aml: AzureML, event_type: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    event = {"topic": aml.config.workspace_id, "subject": subject, "eventType": PREFIX + event_type,
             "eventTime": now_iso(), "id": str(uuid.uuid4()), "data": data, "dataVersion": "",
             "metadataVersion": "1"}
    topics = aml.topics
    if topics is not None:
        kept = topics.received.setdefault(TOPIC, collections.deque(maxlen=MAX_KEPT))
        kept.append({"receivedAt": event["eventTime"], "auth": "system", "event": event})
    if aml.source is not None:
        aml.source.deliver([event])
    return event


def run_data(aml: AzureML, job: Any, status: str | None = None) -> dict[str, Any]:
    props = job.properties
    experiment = str(props.get("experimentName") or "Default")
    data: dict[str, Any] = {
        "experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{aml.config.workspace_id}/experiments/{experiment}")),
        "experimentName": experiment, "runId": job.name, "runType": "azureml.CommandJob",
        "runTags": dict(props.get("tags") or {}), "runProperties": dict(props.get("properties") or {})}
    if status is not None:
        data["runStatus"] = status
    return data


def run_subject(data: dict[str, Any]) -> str:
    return f"experiments/{data['experimentId']}/runs/{data['runId']}"
