"""The reconcile timer: finishes what a missed event or a crash left (jobs to poll, promotions half done)."""

from __future__ import annotations

import logging

import azure.functions as func

from blueprints.runtime import invocation, retraining

bp = func.Blueprint()
log = logging.getLogger("blueprints.timers")


@bp.function_name("reconcile")
@bp.timer_trigger(arg_name="timer", schedule="%RETRAIN_RECONCILE_SCHEDULE%", run_on_startup=False)
def reconcile(timer: func.TimerRequest, context: func.Context) -> None:
    with invocation(context):
        if timer.past_due:
            log.info("the reconcile timer is past due; running now")
        summary = retraining().reconciler.reconcile()
        log.info("reconcile: %s", ", ".join(f"{k}={v}" for k, v in summary.items()))
