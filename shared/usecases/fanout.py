"""One model to many endpoints: the steps of `EndpointDeployer.deploy` per endpoint, with at most
RETRAIN_PATCH_CONCURRENCY endpoints in flight, and the ledger written in batches (leases and attempts of up to
BATCH_ENDPOINTS endpoints together, outcomes likewise) while the service calls run."""

from __future__ import annotations

import logging
import queue
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from shared import failpoints
from shared.decisions import spread_over_queue
from shared.ports.ledger import BATCH_ENDPOINTS, LeasedAttempt, Ledger
from shared.ports.serving import ModelRef
from shared.records import Current, Deployment, EndpointResult, Run
from shared.settings import Target
from shared.usecases.deployment import EndpointDeployer
from shared.usecases.fanout_queue import QueuedFanOut
from shared.usecases.outcomes import record_outcomes

log = logging.getLogger("shared.usecases.fanout")
FLUSH_SECONDS = 1.0  # outcomes are written in full batches, or after this long, or at the end
POINTERS_AHEAD = 10  # batches whose `current` rows one read fetches


class FanOut:
    def __init__(self, deployer: EndpointDeployer, queued: QueuedFanOut | None = None) -> None:
        self.deployer = deployer
        self.ledger = deployer.ledger
        self.settings = deployer.settings
        self.queued = queued  # the queued path (RETRAIN_FANOUT_MODE): batches on the work queue, proofs scheduled

    def deploy(self, target: Target, endpoints: list[str], model: ModelRef, run: Run, force: bool,
               trigger: str) -> list[EndpointResult]:
        default = self.deployer.services.serving(target).protected_endpoint()
        results: dict[str, EndpointResult] = {}
        todo = []
        for ep in dict.fromkeys(endpoints):
            if ep == default:
                results[ep] = EndpointResult(ep, "Refused", "the default endpoint is never patched")
            else:
                todo.append(ep)
        todo.sort()  # each batch's `current` rows are then one range query (no read of the target's other rows)
        serving, s = self.deployer.services.serving(target), self.settings
        if self.queued is not None and spread_over_queue(
                s.fanout_mode, serving.proves_later, len(todo), s.patch_concurrency,
                serving.proof_seconds(s.verify_switch_seconds, s.verify_poll_seconds)):
            for r in self.queued.dispatch(target, todo, model, run, force, trigger):
                results[r.endpoint] = r
            return [results[ep] for ep in dict.fromkeys(endpoints) if ep in results]
        ahead = _PointerPrefetch(self.ledger, target, todo)
        owner = uuid.uuid4().hex
        workers = max(1, min(self.settings.patch_concurrency, len(todo)))
        finished: queue.Queue[tuple[Deployment, Current] | None] = queue.Queue()

        events = self.deployer.events.batch()

        def work(begun: LeasedAttempt) -> None:
            try:
                assert begun.lease is not None
                with events.gathering():
                    outcome = self.deployer.carry_out(target, model, run, force, begun)
                finished.put((outcome, begun.lease))
            except BaseException:
                finished.put(None)
                raise

        chunks = iter([todo[i:i + BATCH_ENDPOINTS] for i in range(0, len(todo), BATCH_ENDPOINTS)])
        in_flight = 0
        done: list[tuple[Deployment, Current]] = []
        oldest = 0.0
        # Outcomes are recorded by one thread of their own, so taking the next leases never waits for them.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanout") as pool, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="fanout-record") as recorder:
            recording: list[Future[list[Deployment]]] = []
            while True:
                # Leases are taken just in time (a batch when fewer than 3x workers are in flight), so none waits
                # long enough in the queue to expire.
                while in_flight < 3 * workers and (chunk := next(chunks, None)) is not None:
                    for begun in self._begin_batch(target, chunk, model, run, trigger, owner, results, ahead):
                        pool.submit(work, begun)
                        in_flight += 1
                if in_flight == 0:
                    break
                item = finished.get()
                in_flight -= 1
                if item is not None:
                    if not done:
                        oldest = time.monotonic()
                    done.append(item)
                    dep = item[0]
                    results[dep.endpoint] = EndpointResult(dep.endpoint, dep.outcome, dep.reason, dep.id)
                    failpoints.reached("mid-fanout")  # one endpoint done, not recorded; others in flight
                if done and (len(done) >= BATCH_ENDPOINTS or in_flight == 0 or
                             time.monotonic() - oldest > FLUSH_SECONDS):
                    # stored, written, then sent: without the announcements the ledger refused
                    recording.append(recorder.submit(record_outcomes, self.ledger, events, done, owner))
                    done = []
            for future in recording:
                for lost in future.result():  # an error recording outcomes is raised here (attempts stay Pending)
                    results[lost.endpoint] = EndpointResult(lost.endpoint, lost.outcome, lost.reason, lost.id)
        events.send(events.store())  # those of endpoints whose work raised
        return [results[ep] for ep in dict.fromkeys(endpoints) if ep in results]

    def _begin_batch(self, target: Target, chunk: list[str], model: ModelRef, run: Run, trigger: str,
                     owner: str, results: dict[str, EndpointResult], ahead: _PointerPrefetch) -> list[LeasedAttempt]:
        """Leases and attempts for a batch of endpoints in one transaction; those that cannot go in it (a held
        lease, a redelivery, a row changed since read) one at a time. Endpoints with nothing to do get a result."""
        drafts = [self.deployer.new_attempt(target, ep, model, run, "promote", trigger) for ep in chunk]
        if len(drafts) > 1:
            began, alone = self.ledger.begin_many(drafts, owner, self.settings.lease_seconds, ahead.rows(chunk))
        else:
            began, alone = [], drafts
        for draft in alone:
            one = self.deployer.begin_alone(draft, owner)
            if isinstance(one, EndpointResult):
                results[draft.endpoint] = one
            else:
                began.append(one)
        return began


class _PointerPrefetch:
    """The `current` rows of one fan-out's batches, read POINTERS_AHEAD batches at a time (one range read: the
    endpoints are sorted) - fewer reads at 10,000 endpoints, memory bounded. A row changed since it was read makes
    its batch's transaction fail, and those endpoints begin one by one from a fresh read."""

    def __init__(self, ledger: Ledger, target: Target, todo: list[str]) -> None:
        self.ledger, self.target, self.todo = ledger, target, todo
        self.rows_read: dict[str, Current] = {}
        self.last = ""

    def rows(self, chunk: list[str]) -> dict[str, Current]:
        if not self.last or chunk[-1] > self.last:
            start = self.todo.index(chunk[0])
            span = self.todo[start:start + POINTERS_AHEAD * BATCH_ENDPOINTS]
            self.rows_read, self.last = self.ledger.currents(self.target.name, span[0], span[-1]), span[-1]
        return {ep: self.rows_read[ep] for ep in chunk if ep in self.rows_read}
