"""The rules of an operator's actions (a patch or rollback, stored as a run) carried out after the call: never gated
again, never the file's fault, and applied only while the endpoint serves what they were decided on. No I/O."""

from __future__ import annotations

from shared.records import Current, Deployment, Run

OPERATOR_ACTIONS = ("patch-", "rollback-")  # the run ids of an operator's patch and rollback (usecases.operations)


def is_operator_action(run: Run) -> bool:
    """An operator's patch or rollback (over HTTP, or the watch's rollback), stored as a run."""
    return run.kind == "manual" and run.id.startswith(OPERATOR_ACTIONS)


def finish_past_gate(run: Run) -> bool:
    """Whether finishing a run's deployment later (reconcile, a queued fan-out's tally) passes the gate: a forced
    run; a hand-dropped model without an evaluation; an operator's action - its gate was applied when the operator
    acted, and a rollback goes back to a model that served, whatever the gate says now."""
    return run.forced or (run.kind == "manual" and (not run.metrics or is_operator_action(run)))


def unservable_is_rejection(run: Run) -> bool:
    """Whether a model no endpoint can serve is the file's fault (moved to rejected/): a hand-dropped model's, not
    an operator's action's nor a run's."""
    return run.kind == "manual" and not is_operator_action(run)


def decided_on_other(dep: Deployment, cur: Current) -> str | None:
    """Why an operator's action carried out later (`decided_on`) no longer applies: the endpoint serves something
    else than what the operator acted on (None: it still applies, or it was not decided ahead)."""
    if dep.decided_on is None or (cur.deployment_id or "-") == dep.decided_on:
        return None
    return f"the endpoint changed since the operator acted (it serves {cur.model_path} now): the {dep.operation} is " \
           "not applied"
