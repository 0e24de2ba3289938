"""Where job inputs, outputs and models live: `azureml://` URIs and blob URLs on the workspace storage account.

Forms understood (the ones Azure ML documents for jobs and models):
- `azureml://datastores/workspaceblobstore/paths/<path>` (and the long form
  `azureml://subscriptions/<s>/resourcegroups/<rg>/workspaces/<ws>/datastores/<ds>/paths/<path>`);
- `azureml://jobs/<job>/outputs/<output>[/paths/<path>]` (a job's output, e.g. a model folder);
- `https://<account>.blob.core.windows.net/<container>/<path>` - here the Azurite account's blob endpoint: the
  workspace reads it with its own (identity-based) access, i.e. the emulator's storage connection string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError, ResourceNotFoundError

from tools.emulator.blobs import StorageAccount

if TYPE_CHECKING:
    from tools.azureml.service import AzureML

_DATASTORE = re.compile(r"^azureml://(?:subscriptions/[^/]+/resourcegroups/[^/]+/workspaces/[^/]+/)?"
                        r"datastores/(?P<ds>[^/]+)/paths/(?P<path>.*)$", re.IGNORECASE)
_JOB_OUTPUT = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<output>[^/]+)(?:/paths/(?P<path>.*))?$",
                         re.IGNORECASE)
DEFAULT_DATASTORE = "workspaceblobstore"


class UriError(ValueError):
    """A URI the workspace cannot resolve or read."""


@dataclass(frozen=True)
class BlobPath:
    container: str
    path: str  # "" or ending with "/" for a folder

    @property
    def relative(self) -> str:
        return f"{self.container}/{self.path}"

    def child(self, name: str) -> BlobPath:
        base = self.path if not self.path or self.path.endswith("/") else self.path + "/"
        return BlobPath(self.container, base + name)


def datastore_uri(path: str) -> str:
    return f"azureml://datastores/{DEFAULT_DATASTORE}/paths/{path}"


def resolve(aml: AzureML, uri: str, depth: int = 0) -> BlobPath:
    if depth > 3:
        raise UriError(f"'{uri}' refers to itself")
    match = _DATASTORE.match(uri)
    if match:
        if match["ds"] != DEFAULT_DATASTORE:
            raise UriError(f"datastore '{match['ds']}' was not found in the workspace (it has "
                           f"'{DEFAULT_DATASTORE}')")
        return BlobPath(aml.config.blobstore_container, match["path"].lstrip("/"))
    match = _JOB_OUTPUT.match(uri)
    if match:
        job = aml.store.state.jobs.get(match["job"])
        outputs = (job.properties.get("outputs") or {}) if job else {}
        output = outputs.get(match["output"])
        if job is None or not isinstance(output, dict) or not output.get("uri"):
            raise UriError(f"job '{match['job']}' has no output '{match['output']}'")
        base = resolve(aml, str(output["uri"]), depth + 1)
        return base.child(match["path"]) if match["path"] else base
    endpoint = StorageAccount.parse(aml.emu.config.storage_connection_string).blob_endpoint + "/"
    if uri.startswith(endpoint):
        container, _, path = uri[len(endpoint):].partition("/")
        if container and path:
            return BlobPath(container, path.split("?")[0])
    raise UriError(f"'{uri}' is neither an azureml:// datastore or job-output URI nor a blob URL on the "
                   f"workspace storage account ({endpoint})")


async def read(aml: AzureML, where: BlobPath) -> bytes:
    try:
        return await aml.emu.blobs.read(aml.emu.config.storage_connection_string, where.relative)
    except ResourceNotFoundError:
        raise UriError(f"{where.relative} does not exist") from None
    except (AzureError, ValueError) as exc:
        raise UriError(f"{where.relative} could not be read ({type(exc).__name__})") from None


async def write(aml: AzureML, where: BlobPath, data: bytes, content_type: str) -> None:
    await aml.emu.blobs.write(aml.emu.config.storage_connection_string, where.relative, data, content_type)


async def read_model(aml: AzureML, model_uri: str) -> tuple[BlobPath, bytes]:
    """The model document a model URI points at: the file itself, or `model.json` in the folder it names."""
    where = resolve(aml, model_uri)
    if where.path.endswith(".json"):
        return where, await read(aml, where)
    target = where.child("model.json")
    return target, await read(aml, target)
