"""Burst coalescing (issue 10): a burst of files for the same endpoints within RETRAIN_COALESCE_SECONDS costs one
BES job, on the newest file; the others end Superseded, pointing at it. A job still running for older data for
the same endpoints is cancelled when newer data is accepted."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def burst(h, folder: str, files: int):
    refs = [h.upload_data(f"{folder}/burst-{i:02d}.csv", rows=150, seed=i) for i in range(files)]
    with ThreadPoolExecutor(files) as pool:  # the deliveries arrive at once, as a burst does
        return refs, list(pool.map(h.app.intake.accept, refs))


def test_a_burst_of_20_files_for_one_endpoint_costs_one_job(harness):
    h = harness(RETRAIN_ENDPOINTS="", RETRAIN_COALESCE_SECONDS="3", RETRAIN_MIN_ROWS="100")
    tenant = h.new_endpoint("burst")
    refs, runs = burst(h, tenant, 20)
    jobs = [j for ref in refs for j in h.jobs_for(ref.path)]
    assert len(jobs) == 1, [j["input"] for j in jobs]
    trained = [r for r in runs if r.status == "Training"]
    superseded = [r for r in runs if r.status == "Superseded"]
    assert len(trained) == 1 and len(superseded) == 19
    winner = trained[0]
    # the newest data in the one total order of runs (Last-Modified, then when each was taken in: issue 21)
    newest = max((h.app.ledger.get_run(r.id) for r in runs), key=lambda r: r.order)
    assert winner.id == newest.id and winner.data_path == newest.data_path
    by = {r.id: r.superseded_by for r in (h.app.ledger.get_run(x.id) for x in superseded)}

    def last(run_id: str) -> str:  # each superseded run points at newer data; the chain ends at the winner
        seen = set()
        while run_id in by and run_id not in seen:
            seen.add(run_id)
            run_id = str(by[run_id])
        return run_id

    assert {last(r.id) for r in superseded} == {winner.id}
    assert all(r.error.startswith("Superseded") for r in superseded)


def test_a_burst_across_two_endpoints_costs_two_jobs(harness):
    h = harness(RETRAIN_ENDPOINTS="", RETRAIN_COALESCE_SECONDS="3", RETRAIN_MIN_ROWS="100")
    first, second = h.new_endpoint("bx"), h.new_endpoint("by")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda folder: burst(h, folder, 5), (first, second)))
    jobs = [j for refs, _ in results for ref in refs for j in h.jobs_for(ref.path)]
    assert len(jobs) == 2


def test_a_job_running_for_older_data_is_cancelled_when_newer_data_is_accepted(start_emulator, harness):
    emu = start_emulator("--job-seconds", "30")
    h = harness(emu.manifest, RETRAIN_ENDPOINTS="")
    tenant = h.new_endpoint("slowjob")
    older = h.app.intake.accept(h.upload_data(f"{tenant}/older.csv", rows=300, seed=1))
    assert older.status == "Training"
    newer = h.app.intake.accept(h.upload_data(f"{tenant}/newer.csv", rows=300, seed=2))
    assert newer.status == "Training"
    older = h.app.ledger.get_run(older.id)
    assert older.status == "Superseded" and older.superseded_by == newer.id
    assert h.app.studio.bes(h.settings.targets[0]).get(older.job_id).StatusCode == "Cancelled"
