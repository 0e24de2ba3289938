"""The composition root: builds the adapters from settings once, and the use cases on top of them. Entry points
(the blueprints, local tools, tests) take what they need from a `Retraining`."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from shared.adapters.azureml.kind import AzureMLKind
from shared.adapters.classic.clients import interactive_policy
from shared.adapters.classic.kind import ClassicKind
from shared.adapters.events import EventPublisher
from shared.adapters.ledger import TableLedger
from shared.adapters.outbox import Outbox
from shared.adapters.storage import Storage
from shared.adapters.work_queue import StorageWorkQueue
from shared.logs import register_secret
from shared.operator_rules import finish_past_gate, unservable_is_rejection
from shared.ports.blobs import BlobStore
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.ports.queues import WORK_QUEUE, WorkQueue
from shared.ports.services import Services, TargetKind
from shared.settings import Settings, get_settings
from shared.usecases.approvals import Approvals
from shared.usecases.coalescing import Coalescing
from shared.usecases.deployment import EndpointDeployer
from shared.usecases.dry_run import DryRun
from shared.usecases.fanout import FanOut
from shared.usecases.fanout_queue import QueuedFanOut
from shared.usecases.intake import TrainingIntake
from shared.usecases.model_landing import ModelLanding
from shared.usecases.operations import Operations
from shared.usecases.outcomes import announcement_recorded
from shared.usecases.poisoned_blobs import POISON_QUEUE, PoisonedBlobs
from shared.usecases.promotion import Promotion
from shared.usecases.reconcile import Reconciler
from shared.usecases.status import StatusPage
from shared.usecases.submission import JobSubmission
from shared.usecases.training import TrainingJobs
from shared.usecases.views import Views
from shared.usecases.watch import Watching


def identity_for(settings: Settings) -> Any:
    """The app's Entra ID credential - its managed identity in Azure (the user-assigned one named by
    `AzureWebJobsStorage__clientId` or `AZURE_CLIENT_ID`), a developer's sign-in locally - when something is reached
    without a key: storage without a connection string, an Event Grid topic without a key, an Azure ML workspace.
    Else None."""
    keyless_events = settings.eventgrid_endpoint is not None and settings.eventgrid_key is None
    azureml = any(t.kind == "azureml" for t in settings.targets)
    if settings.storage_connection_string is not None and not keyless_events and not azureml:
        return None
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.storage_client_id)


class UseCases:
    """The use cases, wired over the ports they talk to (the real adapters, or fakes in tests)."""

    def __init__(self, settings: Settings, storage: BlobStore, ledger: Ledger, events: EventSink,
                 services: Services, queue: WorkQueue | None = None) -> None:
        self.settings, self.storage, self.ledger, self.events, self.services = (settings, storage, ledger, events,
                                                                                services)
        s = settings
        gate = s.gate
        self.deployer = EndpointDeployer(s, ledger, services, events, gate)
        self.queue = queue
        self.fanout_work = QueuedFanOut(self.deployer, queue, self._promote_by_id) if queue is not None else None
        self.jobs = TrainingJobs(s, storage, ledger, services, events)
        submission = JobSubmission(ledger, services, events)
        coalescing = Coalescing(s, storage, ledger, services, events)
        self.intake = TrainingIntake(s, storage, ledger, services, events, submission, coalescing)
        fanout = FanOut(self.deployer, self.fanout_work)
        self.promotion = Promotion(s, ledger, services, events, self.jobs, fanout, gate)
        self.model_landing = ModelLanding(s, storage, ledger, services, events, self.promotion)
        self.poisoned_blobs = PoisonedBlobs(s, self.intake, self.model_landing, queue)
        self.operations = Operations(s, storage, ledger, services, events, self.deployer, gate)
        self.views = Views(s, ledger, services)
        self.dry_run = DryRun(s, storage, ledger, services)
        self.status = StatusPage(s, storage, ledger, services)
        self.approvals = Approvals(s, ledger, events, self.promotion)
        self.watching = Watching(s, ledger, services, events, self.operations, queue)
        if self.fanout_work is not None:
            self.fanout_work.watch = self.watching.check_batch  # `watch` messages come on the same queue
            self.watching.pace = self.fanout_work.pace  # a throttled check holds every instance off
        self.reconciler = Reconciler(s, ledger, services, events, self.intake, self.jobs, self.promotion,
                                     self.approvals, self.watching, self.poisoned_blobs)

    def _promote_by_id(self, run_id: str) -> None:
        """A queued fan-out's tally: the run's promotion again (it reads how far its endpoints got)."""
        run = self.ledger.get_run(run_id)
        if run is not None:  # as reconcile moves it on
            self.promotion.promote(run, force=finish_past_gate(run),
                                   unservable_is_rejection=unservable_is_rejection(run))


class Retraining(UseCases):
    """The library, assembled: adapters (`storage`, `ledger`, `services`, `events`) and use cases."""

    def __init__(self, settings: Settings, interactive: bool = False,
                 kinds: Mapping[str, TargetKind] | None = None) -> None:
        """`interactive`: for an operator's HTTP calls - short retry budgets for the services and storage, so each
        call answers (an error with Retry-After at worst) well within the front end's limit. `kinds`: target
        kinds beside the built-in ones (a kind's adapters drive its targets)."""
        self.settings = settings
        for secret in [settings.bes_key, settings.management_key, settings.eventgrid_key,
                       settings.storage_connection_string] + [t.management_key for t in settings.targets] + \
                [t.bes_key for t in settings.targets]:
            if secret is not None:
                register_secret(secret.get_secret_value())
        credential = identity_for(settings)
        retries = 1 if interactive else 3
        storage = Storage(settings, credential, retries)
        register_secret(storage.account_key)
        ledger = TableLedger(settings, credential, retries)
        events = EventPublisher(settings, Outbox(ledger.outbox), credential,
                                functools.partial(announcement_recorded, ledger))
        classic = ClassicKind(settings, storage, interactive_policy(settings) if interactive else None)
        self.studio = classic.studio  # the Studio (classic) clients, for tools and tests
        azureml = AzureMLKind(settings, storage, credential, interactive)
        queue = StorageWorkQueue(settings, WORK_QUEUE, credential, retries)
        super().__init__(settings, storage, ledger, events, Services(settings.targets, {
            "classic": classic, "azureml": azureml, **(kinds or {})}), queue)
        self.work_queue = queue
        self.poisoned_blobs.poisoned_again = StorageWorkQueue(settings, f"{POISON_QUEUE}-poison", credential, retries)
        self.storage: Storage = storage
        self.ledger: TableLedger = ledger
        self.events: EventPublisher = events

    def ensure_storage(self) -> None:
        """Create the containers and tables when missing (locally; in Azure the template creates them)."""
        self.storage.ensure_containers()
        self.ledger.prepare()
        self.work_queue.ensure()

    def close(self) -> None:
        self.services.close()


@functools.lru_cache(maxsize=2)
def retraining(interactive: bool = False) -> Retraining:
    """The app's `Retraining` (one for triggers and the timer, one with short budgets for HTTP calls), built on
    first use: settings are validated then, not at import."""
    built = Retraining(get_settings(), interactive)
    built.ensure_storage()
    return built
