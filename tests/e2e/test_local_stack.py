"""The whole story through devhost + the emulator + Azurite, as separate processes, with no fakes: files dropped
into containers travel as Event Grid BlobCreated deliveries to the app's webhooks; everything else is real HTTP."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.conftest import leaked_secrets
from tests.e2e.conftest import Client, host_environment, start_stack
from tools.emulator.census import csv_text
from tools.localdev.azurite import ACCOUNT_KEY

INITIAL = ("experimentoutput", "initial/census-model.ilearner")


def current(client: Client, name: str) -> dict:
    resp = client.call("GET", f"endpoints/{name}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def deployed(client: Client, name: str, data_path: str) -> dict | None:
    """The endpoint's view once the run of `data_path` is its newest promotion, Deployed (else None)."""
    view = current(client, name)
    top = view["history"][0]
    if top["operation"] != "promote" or top["outcome"] != "Deployed":
        return None
    run = client.call("GET", f"runs/{top['runId']}").json()
    return view if run["dataPath"] == data_path else None


def test_a_csv_dropped_into_training_data_ends_with_the_endpoint_verified_on_the_new_model(any_client):
    """Classic: BES trains, the model landing in models/ is patched in. Azure ML: a job trains, the workspace's
    RunCompleted event reaches azureml_job_event through devhost's Event Grid webhook (reconcile is off), a new
    deployment takes all the traffic."""
    client = any_client
    name = client.new_endpoint("drop")
    before_model = client.serving(name)
    before_score = client.score(name) if client.kind == "classic" else None  # a new Azure ML endpoint: no model
    data_path = f"training-data/{name}/fresh.csv"
    client.upload("training-data", f"{name}/fresh.csv", csv_text(4000, seed=21, drift=1.0).encode())
    view = client.wait_for("the promotion", lambda: deployed(client, name, data_path))
    run = client.wait_for("the run's end", lambda: (lambda r: r if r["status"] != "Deploying" else None)(  # (Azure
        client.call("GET", f"runs/{view['current']['runId']}").json()))  # ML: the queue's tally ends it just after)
    assert run["dataPath"] == data_path and run["status"] == "Deployed"
    assert client.serving(name) == run["modelPath"] != before_model
    assert client.score(name) != before_score
    # The event is sent just after the ledger takes the pointer (usecases/outcomes.record_outcomes: store, write,
    # send); on Azure ML the queue's tally, another invocation, may end the run in between.
    updated = client.wait_for("the EndpointUpdated event", lambda: [
        e for e in client.events("EndpointUpdated") if e["data"]["endpoint"] == name])
    assert [e["data"]["runId"] for e in updated] == [run["id"]]
    # classic: the storage event for the model also arrived - the same promotion, not a second one
    assert [d["outcome"] for d in current(client, name)["history"]] == ["Deployed", "Created"]
    if client.kind == "azureml":
        (live,) = client.deployments(name)  # one deployment, all the traffic, serving the run's model
        assert client.traffic(name) == {live: 100}
        assert client.deployments(name)[live] == {"state": "Succeeded", "model": run["modelPath"]}
        log = (client.stack.workdir / "functions.log").read_text()
        # promoted by the job's event: the swap handed to the work queue (its proof may outlast an invocation)
        assert f"job {run['jobId']}: run {run['id']} Pending" in log
        assert "Executed 'Functions.azureml_job_event' (Succeeded" in log
        assert "Functions.reconcile" not in log


def test_a_model_dropped_into_models_by_hand_is_deployed(client):
    name = client.new_endpoint("hand")
    client.upload("models", f"{name}/by-hand.ilearner", client.read(*INITIAL))
    client.wait_for("the hand-dropped model to serve",
                    lambda: client.serving(name) == f"models/{name}/by-hand.ilearner")
    view = client.wait_for("the ledger", lambda: (v := current(client, name))["history"][0]["outcome"] == "Deployed"
                           and v)
    assert view["history"][0]["trigger"] == "blob"
    assert client.score(name) > 0


def test_rollback_over_http_returns_to_the_model_the_endpoint_was_created_with(client):
    name = client.new_endpoint("back")
    original = client.serving(name)
    model = f"models/{name}/staged.ilearner"
    stage_model(client, name, model)  # a model landing in models/<endpoint>/ is deployed to it on landing
    resp = client.call("POST", f"endpoints/{name}/rollback")
    assert resp.status_code == 200, resp.text
    assert client.serving(name) == original
    # and patched in again by hand (forced: it has no evaluation beside it to gate it with)
    resp = client.call("POST", f"endpoints/{name}/model", json={"model": model, "force": True})
    assert resp.status_code == 200 and resp.json()["outcome"] == "Deployed", resp.text
    assert client.serving(name) == model
    assert [e for e in client.events("EndpointRolledBack") if e["data"]["endpoint"] == name]


def test_an_azureml_rollback_over_http_is_a_traffic_switch_to_the_previous_deployment(aml_client, capsys):
    client = aml_client
    name = client.new_endpoint("back")
    runs = []
    for seed in (1, 2):
        path = f"training-data/{name}/data-{seed}.csv"
        client.upload("training-data", path.removeprefix("training-data/"),
                      csv_text(2000, seed=seed, drift=0.5 * seed).encode())
        view = client.wait_for(f"the promotion of {path}", lambda p=path: deployed(client, name, p))
        runs.append(view["current"])
    first, second = (r["modelPath"] for r in runs)
    before = client.deployments(name)
    assert client.serving(name) == second and sorted(client.traffic(name).values()) == [0, 100]
    started = time.monotonic()
    resp = client.call("POST", f"endpoints/{name}/rollback")  # answered at once: the work queue proves it
    assert resp.status_code == 202 and resp.json()["outcome"] == "Pending", resp.text
    assert resp.headers["Location"] == f"/api/runs/{resp.json()['runId']}" and time.monotonic() - started < 10
    action = client.wait_for("the rollback", lambda: (lambda r: r if r["status"] == "Deployed" else None)(
        client.call("GET", resp.headers["Location"].removeprefix("/api/")).json()), timeout=60)
    assert action["kind"] == "manual" and client.serving(name) == first
    assert client.deployments(name) == before  # the same two deployments, nothing created or deleted
    by_model = {dep["model"]: dep_name for dep_name, dep in before.items()}
    assert client.traffic(name) == {by_model[first]: 100, by_model[second]: 0}
    assert current(client, name)["history"][0]["operation"] == "rollback"
    # sent by the proof just after its ledger write; the tally may mark the run Deployed in between
    client.wait_for("the EndpointRolledBack event", lambda: [
        e for e in client.events("EndpointRolledBack") if e["data"]["endpoint"] == name])
    # the README's score helper, on an Azure ML stack: through the scoringUri, with an Entra token
    from tools.localdev.__main__ import main as localdev

    assert localdev(["--stack", str(client.stack.state_path), "score", name, "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert f"deployment {by_model[first]} answered, serving {first}" in out and out.count("P(income >50K)") == 2


@pytest.fixture(scope="module")
def first_model_slow_deployment(aml_client: Client) -> tuple[dict, int, list[int]]:
    """A new Azure ML endpoint's first model, its deployment taking 6 s to create (a real one takes minutes): the
    endpoint's view, the PUTs of endpoints while it went live, and how long each azureml_job_event invocation for
    its job took (ms)."""
    client = aml_client
    name = client.new_endpoint("first")
    admin, aml_admin = client.m["admin_url"], client.m["azureml"]["admin_url"]
    (counter,) = client.http.post(f"{admin}/faults", json={"route": "azureml.put_endpoint", "method": "PUT"},
                                  timeout=10).json()  # no fault: it only counts
    stuck = client.http.post(f"{aml_admin}/deployment-faults", json={"endpoint": name, "stuck_seconds": 6,
                                                                       "count": 1}, timeout=10)
    assert stuck.status_code == 201, stuck.text
    try:
        path = f"training-data/{name}/first.csv"
        client.upload("training-data", path.removeprefix("training-data/"), csv_text(1500, seed=4).encode())
        view = client.wait_for("the first model", lambda: deployed(client, name, path), timeout=90)
        puts = next(r["hits"] for r in client.http.get(f"{admin}/faults", timeout=10).json()
                    if r["id"] == counter["id"])
    finally:
        client.http.delete(f"{admin}/faults/{counter['id']}", timeout=10)
        client.http.delete(f"{aml_admin}/deployment-faults", timeout=10)
    job = client.call("GET", f"runs/{view['current']['runId']}").json()["jobId"]
    log = (client.stack.workdir / "functions.log").read_text()
    ids = set(re.findall(rf"\[invocation=([0-9a-f-]+)\] job {job}:", log))
    took = [int(ms) for i, ms in re.findall(r"Executed 'Functions.azureml_job_event' \(\w+, Id=([0-9a-f-]+), "
                                            r"Duration=(\d+)ms\)", log) if i in ids]
    return view, puts, took


def test_a_new_azureml_endpoints_first_model_takes_one_traffic_update(first_model_slow_deployment):
    view, puts, _ = first_model_slow_deployment
    assert view["history"][0]["outcome"] == "Deployed"
    assert puts == 1  # {new: 100} once


def test_the_job_event_is_answered_before_the_deployment_is_done(first_model_slow_deployment):
    view, _, took = first_model_slow_deployment
    assert view["history"][0]["outcome"] == "Deployed" and took
    assert max(took) < 3000, took  # the deployment took 6 s to create


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads the host's environment from /proc")
def test_no_key_or_connection_string_is_needed_for_azure_ml(aml_client):
    """The Azure ML stack runs in identity mode (Azurite with OAuth, the app's managed identity; the story tests above
    pass on it): no storage key, no Studio key, no topic key, no Azure ML key in the app's settings or in the
    function host's environment; the target names the workspace and how to train, never a credential."""
    client = aml_client
    settings_text = Path(str(client.stack.local_settings)).read_text()
    env = "\n".join(f"{k}={v}" for k, v in host_environment(client.stack).items()
                    if k not in os.environ or os.environ[k] != v)
    m = client.m
    for where, text in (("local.settings.json", settings_text), ("the host's environment", env)):
        assert ACCOUNT_KEY not in text and "AccountKey=" not in text and "SharedAccessSignature" not in text, where
        for secret in (m["eventgrid"]["topic_key"], m["workspace_token"], m["training_service"]["api_key"]):
            assert secret not in text, where
    values = json.loads(settings_text)["Values"]
    assert not [k for k in values if k == "AzureWebJobsStorage" or k.endswith(("_KEY", "_SAS"))], values.keys()
    assert values["AzureWebJobsStorage__credential"] == "managedidentity"
    (target,) = json.loads(values["RETRAIN_TARGETS"])
    assert target["kind"] == "azureml" and set(target) == {"name", "kind", "azureml", "endpoints"}
    assert not [k for k in target["azureml"] if "key" in k.lower() or "secret" in k.lower() or "token" in k.lower()]
    assert values["IDENTITY_ENDPOINT"].startswith("https://") and values["AZURE_CLIENT_ID"]
    # and the workspace's endpoints take Entra tokens, not keys
    name = client.new_endpoint("nokey")
    assert client.ws is not None and client.ws.endpoint(name)["properties"]["authMode"] == "AADToken"


def stage_model(client: Client, name: str, model: str) -> None:
    """Put a model into models/<endpoint>/ and wait until the blob trigger has deployed it (so the test's own
    calls do not race the trigger)."""
    client.upload("models", model.removeprefix("models/"), client.read(*INITIAL))
    client.wait_for("the staged model to serve", lambda: client.serving(name) == model)
    client.wait_for("its ledger row", lambda: current(client, name)["history"][0]["modelPath"] == model)


def test_every_http_route_success_and_error(client):
    name = client.new_endpoint("routes")
    model = f"models/{name}/staged.ilearner"
    stage_model(client, name, model)
    client.upload("training-data", f"{name}/routes.csv", csv_text(500, seed=5).encode())
    cases = [
        ("GET", "health", None, 200),
        ("GET", "endpoints", None, 200),
        ("POST", "endpoints", {"name": name}, 409),
        ("POST", "endpoints", {"name": "UPPER"}, 400),
        ("GET", f"endpoints/{name}", None, 200),
        ("GET", "endpoints/missing-one", None, 404),
        ("POST", f"endpoints/{name}/model", {"model": model, "force": True}, 200),  # no evaluation: force
        ("POST", f"endpoints/{name}/model", {"model": "models/none.ilearner"}, 404),
        ("POST", f"endpoints/{name}/rollback", {}, 200),
        ("POST", "endpoints/default/rollback", {}, 409),
        # the storage event's delivery races this call for the same file: 202 while its run works, 200 once done
        ("POST", "retrain", {"blob": f"training-data/{name}/routes.csv"}, (200, 202)),
        ("POST", "retrain", {"blob": "models/x.csv"}, 400),
        ("GET", "runs", None, 200),
        ("GET", "runs?limit=9999", None, 400),
        ("GET", "runs/" + "0" * 32, None, 404),
        ("GET", "nowhere", None, 404),
        ("DELETE", "endpoints", None, 405),
    ]
    for method, path, body, status in cases:
        resp = client.call(method, path, json=body) if body is not None else client.call(method, path)
        assert resp.status_code in (status if isinstance(status, tuple) else (status,)), \
            f"{method} {path}: {resp.status_code} {resp.text}"
        assert resp.headers["Content-Type"].startswith("application/json"), path
        if isinstance(status, int) and status >= 400:
            error = resp.json()["error"]
            assert error["code"] and error["message"], path
        assert not leaked_secrets(resp.text), path
    run_id = client.call("GET", "runs").json()["runs"][0]["id"]
    assert client.call("GET", f"runs/{run_id}").status_code == 200


def test_bad_csv_and_bad_model_end_in_rejected_with_a_reason_and_an_event_and_the_app_keeps_serving(client):
    name = client.new_endpoint("bad")
    serving = client.serving(name)
    client.upload("training-data", f"{name}/broken.csv", b"age,income\nforty,>50K\n")
    client.upload("models", f"{name}/broken.ilearner", b"definitely not a model")
    client.wait_for("the CSV in rejected/", lambda: client.exists("rejected", f"training-data/{name}/broken.csv"))
    client.wait_for("the model in rejected/", lambda: client.exists("rejected", f"models/{name}/broken.ilearner"))
    # a move is copy, reason, then delete: the source goes a moment after the copy appears
    client.wait_for("the CSV gone from training-data/",
                    lambda: not client.exists("training-data", f"{name}/broken.csv"))
    client.wait_for("the model gone from models/", lambda: not client.exists("models", f"{name}/broken.ilearner"))
    data_reason = json.loads(client.read("rejected", f"training-data/{name}/broken.csv.reason.json"))
    model_reason = json.loads(client.read("rejected", f"models/{name}/broken.ilearner.reason.json"))
    assert data_reason["code"] == "MissingColumns" and data_reason["line"] == 1
    assert model_reason["code"] == "ModelNotServable" and "IncompatibleModel" in model_reason["message"]
    assert client.read("rejected", f"models/{name}/broken.ilearner") == b"definitely not a model"
    # each event is published after the move (and, for the CSV, after the run's Rejected): moments after the delete
    rejected_data = client.wait_for("the TrainingDataRejected event", lambda: [
        e for e in client.events("TrainingDataRejected") if e["data"]["blob"] == f"training-data/{name}/broken.csv"])
    rejected_models = client.wait_for("the ModelRejected event", lambda: [
        e for e in client.events("ModelRejected") if e["data"].get("model") == f"models/{name}/broken.ilearner"])
    assert rejected_data[0]["data"]["code"] == "MissingColumns"
    assert rejected_models[0]["data"]["code"] == "ModelNotServable"
    assert client.serving(name) == serving and client.score(name) > 0
    assert client.call("GET", "health").status_code == 200


def test_the_host_logged_each_invocation_and_no_secret(client):
    log = (client.stack.workdir / "functions.log").read_text()
    assert "Executed 'Functions.training_data_landed' (Succeeded" in log
    assert "Executed 'Functions.model_landed' (Succeeded" in log
    assert "Event Grid subscription validated" in log
    assert not leaked_secrets(log)
    emulator_log = (client.stack.workdir / "emulator" / "emulator.log").read_text()
    assert not leaked_secrets(emulator_log)


@pytest.fixture(scope="module")
def failing_client():
    stack = start_stack("poison", RETRAIN_HTTP_MAX_ATTEMPTS="1",
                        AzureFunctionsJobHost__extensions__queues__visibilityTimeout="00:00:00",
                        AzureFunctionsJobHost__extensions__blobs__poisonBlobThreshold="3")
    try:
        yield Client(stack)
    finally:
        stack.stop()


def test_a_blob_that_keeps_failing_is_tried_poison_threshold_times_then_taken_from_the_poison_queue(failing_client):
    """The host tries a failing blob poisonBlobThreshold times and puts it on webjobs-blobtrigger-poison; the app's
    blob_poisoned trigger takes that message (issue 21: it used to stay there, the file never explained) and takes
    the file again - here it has a run, left for reconcile - or schedules a later try."""
    client = failing_client
    name = client.new_endpoint("poison")
    fault = {"route": "bes.submit", "status": 503, "retry_after": 0, "count": 1000}
    assert client.http.post(f"{client.m['admin_url']}/faults", json=fault, timeout=10).status_code == 201
    client.upload("training-data", f"{name}/never.csv", csv_text(300, seed=9).encode())
    path = client.stack.workdir / "functions.log"
    def taken() -> str | None:
        text = path.read_text()
        return text if "Executed 'Functions.blob_poisoned' (Succeeded" in text else None

    log = client.wait_for("the poison message taken", taken)
    assert log.count("Executed 'Functions.training_data_landed' (Failed") == 3
    assert re.search(rf"poisoned blob training-data/{name}/never.csv: (taken|retrying)", log)
    # nothing was lost and the app still answers
    assert client.exists("training-data", f"{name}/never.csv")
    run = next(r for r in client.call("GET", "runs").json()["runs"] if r["dataPath"].endswith(f"{name}/never.csv"))
    assert run["status"] == "Accepted" and run["jobId"] is None
    assert client.call("GET", "health").status_code == 200


def test_the_readme_helpers_drop_a_file_and_score_through_an_endpoint(client, tmp_path, capsys):
    from tools.localdev.__main__ import main as localdev

    name = client.new_endpoint("cli")
    state = str(client.stack.state_path)
    assert localdev(["--stack", state, "score", name, "--rows", "2"]) == 0
    before = capsys.readouterr().out
    assert f"endpoint {name} serves experimentoutput/initial/census-model.ilearner" in before
    data = tmp_path / "new.csv"
    data.write_text(csv_text(3000, seed=8, drift=1.0))
    assert localdev(["--stack", state, "drop", str(data), f"training-data/{name}/new.csv"]) == 0
    client.wait_for("the new model", lambda: client.serving(name).startswith("models/"))
    assert localdev(["--stack", state, "score", name, "--rows", "2"]) == 0
    after = capsys.readouterr().out
    assert "serves models/" in after
    assert [line.split("=")[-1] for line in before.splitlines()[1:]] != \
        [line.split("=")[-1] for line in after.splitlines()[1:]]


def test_the_status_page_in_a_real_browser_shows_endpoints_runs_and_the_metric_chart(client):
    """Headless Chromium (Debian's, installed by `make test`) loads /api/status from the running stack."""
    import shutil
    import subprocess

    from tests.conftest import RUNS_DIR

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed and `make test` could not install it (apt-get needs root)")
    name = client.new_endpoint("page")
    client.upload("training-data", f"{name}/page.csv", csv_text(3000, seed=31, drift=1.0).encode())
    client.wait_for("the promotion", lambda: current(client, name)["history"][0]["outcome"] == "Deployed")
    bad = '{"format": "studio-classic-emulator/ilearner", "formatVersion": 1, "learner": "x", "numeric": [], ' \
          '"categorical": [], "weights": [1.0], "bias": 0.0, "label": {"positive": "a", "negative": "b"}}'
    client.upload("models", f"{name}/broken.ilearner", bad.encode())
    client.wait_for("the rollback", lambda: current(client, name)["history"][0]["outcome"] == "RolledBack")

    def rejected_table(page: str) -> str:
        table = page[page.index('<table id="rejected">'):]
        return table[:table.index("</table>")]

    # the rejected listing's index entry is written after the run's RolledBack
    client.wait_for("the model in the rejected listing", lambda: f"models/{name}/broken.ilearner"
                    in rejected_table(client.call("GET", "status").text))
    url = f"{client.api}/status"
    flags = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--hide-scrollbars"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "<h1>Retraining status</h1>" in dom and name in dom
    row = dom[dom.index(f"default/{name}"):]
    row = row[:row.index("</tr>")]
    assert "<svg" in row and 'class="mark Deployed"' in row and 'class="mark RolledBack"' in row
    assert "<h2>Files in rejected/</h2>" in dom and "<h2>Last runs</h2>" in dom
    assert f"models/{name}/broken.ilearner" in rejected_table(dom)
    shot = RUNS_DIR / "status-page.png"
    shot.unlink(missing_ok=True)
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1400,1800", url], capture_output=True,
                   timeout=120, check=True)
    assert shot.exists() and shot.stat().st_size > 20_000, "the screenshot is missing or blank"
