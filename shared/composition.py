"""The composition root: builds the adapters from settings once, and the use cases on top of them. Entry points
(the blueprints, local tools, tests) take what they need from a `Retraining`."""

from __future__ import annotations

import functools
from typing import Any

from shared.adapters.events import EventPublisher
from shared.adapters.ledger import Ledger
from shared.adapters.outbox import Outbox
from shared.adapters.storage import Storage
from shared.adapters.studio import StudioClients, interactive_policy
from shared.decisions import Gate
from shared.logs import register_secret
from shared.settings import Settings, get_settings
from shared.usecases.approvals import Approvals
from shared.usecases.coalescing import Coalescing
from shared.usecases.deployment import EndpointDeployer
from shared.usecases.dry_run import DryRun
from shared.usecases.fanout import FanOut
from shared.usecases.intake import TrainingIntake
from shared.usecases.model_landing import ModelLanding
from shared.usecases.operations import Operations
from shared.usecases.promotion import Promotion
from shared.usecases.reconcile import Reconciler
from shared.usecases.status import StatusPage
from shared.usecases.submission import JobSubmission
from shared.usecases.training import TrainingJobs
from shared.usecases.verification import Verifier
from shared.usecases.views import Views


def identity_for(settings: Settings) -> Any:
    """The app's Entra ID credential - its managed identity in Azure (the user-assigned one named by
    `AzureWebJobsStorage__clientId` or `AZURE_CLIENT_ID`), a developer's sign-in locally - when something is reached
    without a key: storage without a connection string, an Event Grid topic without a key. Else None."""
    keyless_events = settings.eventgrid_endpoint is not None and settings.eventgrid_key is None
    if settings.storage_connection_string is not None and not keyless_events:
        return None
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.storage_client_id)


class Retraining:
    """The library, assembled: adapters (`storage`, `ledger`, `studio`, `events`) and use cases."""

    def __init__(self, settings: Settings, interactive: bool = False) -> None:
        """`interactive`: for an operator's HTTP calls - short retry budgets for Studio and storage, so each call
        answers (an error with Retry-After at worst) well within the front end's limit."""
        self.settings = settings
        for secret in [settings.bes_key, settings.management_key, settings.eventgrid_key,
                       settings.storage_connection_string] + [t.management_key for t in settings.targets] + \
                [t.bes_key for t in settings.targets]:
            if secret is not None:
                register_secret(secret.get_secret_value())
        credential = identity_for(settings)
        retries = 1 if interactive else 3
        self.storage = Storage(settings, credential, retries)
        register_secret(self.storage.account_key)
        self.ledger = Ledger(settings, credential, retries)
        self.events = EventPublisher(settings, Outbox(self.ledger.outbox), credential)
        self.studio = StudioClients(settings, interactive_policy(settings) if interactive else None)

        gate = Gate.from_settings(settings)
        verifier = Verifier(settings, self.studio, self.ledger, self.storage.minter)
        self.deployer = EndpointDeployer(settings, self.ledger, self.studio, self.events, verifier, gate)
        self.jobs = TrainingJobs(settings, self.storage, self.ledger, self.studio, self.events)
        submission = JobSubmission(settings, self.storage, self.ledger, self.studio, self.events)
        coalescing = Coalescing(settings, self.storage, self.ledger, self.studio, self.events)
        self.intake = TrainingIntake(settings, self.storage, self.ledger, self.studio, self.events, submission,
                                     coalescing)
        self.promotion = Promotion(settings, self.storage, self.ledger, self.studio, self.events, self.jobs,
                                   FanOut(self.deployer), gate)
        self.models = ModelLanding(settings, self.storage, self.ledger, self.studio, self.events, self.promotion)
        self.operations = Operations(settings, self.storage, self.ledger, self.studio, self.events, self.deployer,
                                     gate)
        self.views = Views(settings, self.ledger, self.studio)
        self.dry_run = DryRun(settings, self.storage, self.ledger, self.studio)
        self.status = StatusPage(settings, self.storage, self.ledger, self.studio)
        self.approvals = Approvals(settings, self.ledger, self.events, self.promotion)
        self.reconciler = Reconciler(settings, self.ledger, self.studio, self.events, self.intake, self.jobs,
                                     self.promotion, self.approvals)

    def ensure_storage(self) -> None:
        """Create the containers and tables when missing (locally; in Azure the template creates them)."""
        self.storage.ensure_containers()
        self.ledger.ensure_tables()

    def close(self) -> None:
        self.studio.close()


@functools.lru_cache(maxsize=2)
def retraining(interactive: bool = False) -> Retraining:
    """The app's `Retraining` (one for triggers and the timer, one with short budgets for HTTP calls), built on
    first use: settings are validated then, not at import."""
    built = Retraining(get_settings(), interactive)
    built.ensure_storage()
    return built
