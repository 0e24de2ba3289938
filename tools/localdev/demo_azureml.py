"""`make demo TARGET=azureml`: the retraining story on the Azure ML stand-in, through public surfaces only - the app's
HTTP API, the storage container, the workspace's ARM routes and scoring URI (with Entra tokens from the local
identity endpoint), and the Event Grid topics (the app's `retrain`, the workspace's `azureml`).

A new online endpoint serves nothing until its first model, so data lands twice: a first model, then drifted data.
Each landing is followed live - run accepted, the Azure ML job's statuses (the workspace's events, which reach the
app's `azureml_job_event` trigger), the gate, a model version registered, a new deployment created with 0 % traffic,
the traffic steps, the verification - and timed from the data landing to 100 % traffic on the new deployment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from azure.storage.blob import BlobServiceClient

from tools.emulator.census import csv_text
from tools.localdev import workspace
from tools.localdev.demo_common import ENDPOINT, AppDemo, DemoFailed, census_sample, wall
from tools.localdev.stack import Stack

ENDED = ("Rejected", "Failed", "Cancelled", "BelowGate", "RolledBack", "Superseded")
AML = "Microsoft.MachineLearningServices."


@dataclass
class Landing:
    """One file's way from storage to 100 % traffic: what happened when (wall-clock times)."""

    label: str
    data_path: str
    landed: float
    run: dict[str, Any] = field(default_factory=dict)
    deployment: str = ""
    steps: list[tuple[float, str]] = field(default_factory=list)  # (time, what) for the timeline
    full_traffic: float = 0.0
    verified: float = 0.0

    def mark(self, at: float, what: str) -> None:
        self.steps.append((at, what))


class AzureMLDemo(AppDemo):
    def __init__(self, stack: Stack, rows: int, timeout: float, t0: float) -> None:
        assert stack.azurite is not None and stack.tls is not None
        # the emulator (ARM, scoring) serves HTTPS
        super().__init__(stack, rows, timeout, t0, workspace.session(str(stack.tls.ca)))
        self.ws = workspace.Workspace(self.manifest, self.http)
        self.blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string,
                                                              connection_verify=str(stack.tls.ca))

    def score(self, rows: list[dict[str, Any]]) -> tuple[list[float], str] | None:
        """Scores through the endpoint's scoringUri (None: no deployment takes traffic yet)."""
        try:
            return self.ws.score(ENDPOINT, rows)
        except workspace.WorkspaceCallFailed as exc:
            if workspace.NO_MODEL in str(exc):
                return None
            raise DemoFailed(str(exc)) from None

    # ---- the story ------------------------------------------------------------------------------------------
    def run(self) -> None:
        health = self.call("GET", "/health", 200)
        self.say(f"app healthy: {', '.join(k for k, v in health['checks'].items() if v['ok'])}")
        created = self.call("POST", "/endpoints", 201, json={"name": ENDPOINT, "description": "created by make demo"})
        self.say(f"online endpoint '{ENDPOINT}' created through POST /api/endpoints (authMode {created['authMode']}, "
                 f"scoringUri {created['scoringUri']}); no deployment yet")
        sample = census_sample()
        if self.score(sample) is not None:
            raise DemoFailed(f"'{ENDPOINT}' answered before it had a model")
        self.say(f"scored {len(sample)} census rows through '{ENDPOINT}': no model yet (HTTP 404, no deployment "
                 "takes traffic) - a first model comes from the first data")
        first = self.land("first data", "census-2025.csv", seed=11, drift=0.0)
        scored = self.score(sample)
        if scored is None:
            raise DemoFailed("the endpoint serves nothing after the first model was verified")
        first_scores, first_dep = scored
        self.say(f"scored the rows again: deployment {first_dep} answered")
        second = self.land("drifted data", "census-drifted.csv", seed=12, drift=1.0)
        scored = self.score(sample)
        if scored is None or scored[1] != second.deployment:
            raise DemoFailed(f"the endpoint does not answer from the new deployment {second.deployment}: {scored}")
        self.say(f"scored the rows again: deployment {scored[1]} answered")
        self.report(sample, first_scores, scored[0], first, second)

    def land(self, label: str, name: str, seed: int, drift: float) -> Landing:
        path = f"{ENDPOINT}/{name}"
        csv = csv_text(self.rows, seed=seed, drift=drift).encode()
        before, traffic = set(self.ws.deployments(ENDPOINT)), self.ws.traffic(ENDPOINT)
        self.blobs.get_blob_client("training-data", path).upload_blob(csv, overwrite=True)
        landing = Landing(label, f"training-data/{path}", time.time())
        landing.mark(landing.landed, f"data landed: training-data/{path}")
        self.say(f"dropped training-data/{path} ({label}: {self.rows:,} rows, {len(csv) / 1e6:.1f} MB"
                 + (", drifted)" if drift else ")"))
        self.follow(landing, before, traffic)
        return landing

    def follow(self, landing: Landing, before: set[str], traffic: dict[str, int]) -> None:
        """Poll the app's runs API, the workspace (ARM, its events) and the app's events until the endpoint is
        verified on the new deployment."""
        deadline = time.monotonic() + self.timeout
        shown: set[str] = set()
        run: dict[str, Any] | None = None

        def stage(key: str, text: str, at: float | None = None) -> None:
            if key not in shown:
                shown.add(key)
                self.say(text)
                landing.mark(at or time.time(), text)

        while time.monotonic() < deadline:
            if run is None:
                runs = self.call("GET", "/runs?limit=20", 200)["runs"]
                run = next((r for r in runs if r.get("dataPath") == landing.data_path), None)
            if run is not None:
                run = self.call("GET", f"/runs/{run['id']}", 200)
                landing.run = run
                at = {t["status"]: wall(t["at"]) for t in run.get("transitions") or []}
                stage("accepted", f"accepted: run {run['id'][:12]}", at.get("Accepted"))
                if run.get("jobId"):
                    stage("submitted", f"validated ({run.get('rows') or '?'} rows); Azure ML job {run['jobId']} "
                                       "submitted (a command job, the file its input)",
                          wall(run["submittedAt"]) if run.get("submittedAt") else None)
                if run["status"] in ENDED:
                    raise DemoFailed(f"run {run['id']} ended {run['status']}: {run.get('error')}")
                metric = (run.get("metrics") or {}).get(self.stack.settings.get("RETRAIN_GATE_METRIC", "AUC"))
                if metric is not None:
                    stage("gate", f"gate: AUC {metric:.4f} against minimum "
                                  f"{self.stack.settings.get('RETRAIN_GATE_MINIMUM', '0.7')}: passed",
                          at.get("Deploying") or at.get("Trained"))
                self.workspace_events(run, stage)
            if run is not None and run["status"] in ("Trained", "Deploying", "Deployed"):
                deployments = self.ws.deployments(ENDPOINT)
                for name in sorted(set(deployments) - before):
                    landing.deployment = name
                    stage(f"dep-{name}", f"deployment {name} being created with 0 % traffic "
                                         f"(model {deployments[name]['model']})")
                    if deployments[name]["state"] == "Succeeded":
                        stage(f"ok-{name}", f"deployment {name} Succeeded; the app smoke-scores it directly "
                                            "(azureml-model-deployment header)")
                now = self.ws.traffic(ENDPOINT)
                if now != traffic and any(now.values()):
                    traffic = now
                    text = ", ".join(f"{d} {s} %" for d, s in sorted(now.items(), key=lambda i: -i[1]))
                    stage(f"traffic-{text}", f"traffic: {text}")
                    if landing.deployment and now.get(landing.deployment) == 100 and not landing.full_traffic:
                        landing.full_traffic = time.time()
            event = self.verified_event(run)
            if event is not None:
                landing.verified = wall(event["time"])
                # 100 % came before the verification (seen late, or between two polls): no later than it
                landing.full_traffic = min(landing.full_traffic or landing.verified, landing.verified)
                landing.steps = [(min(at, landing.verified) if what.startswith("traffic") else at, what)
                                 for at, what in landing.steps]
                stage("verified", f"verified: {ENDPOINT} answers from {landing.deployment} with 100 % traffic "
                                  "(Retrain.EndpointUpdated)", landing.verified)
                return
            time.sleep(0.15)
        raise self.not_verified(run)

    def workspace_events(self, run: dict[str, Any], stage: Any) -> None:
        """The job's statuses and the model version's registration, as the workspace announced them."""
        for event in self.ws.events():
            data, kind = event.get("data") or {}, event["eventType"].removeprefix(AML)
            at = wall(event["eventTime"])
            if data.get("runId") == run.get("jobId") and kind == "RunStatusChanged":
                stage(f"job-{data.get('runStatus')}", f"job {data['runId']}: {data.get('runStatus')}", at)
            elif data.get("runId") == run.get("jobId") and kind == "RunCompleted":
                stage("completed", "RunCompleted published (Event Grid -> the app's azureml_job_event)", at)
            elif kind == "ModelRegistered" and (data.get("ModelTags") or {}).get("retrain.path") == \
                    run.get("modelPath"):
                stage("registered", f"model version {data['ModelName']}:{data['ModelVersion']} registered", at)

    def report(self, sample: list[dict[str, Any]], first: list[float], second: list[float], one: Landing,
               two: Landing) -> None:
        print("\nScores through the endpoint's scoringUri (probability of income >50K); before the first model the "
              "endpoint had none:")
        print(f"  {'row':>3}  {'age':>3}  {'education':<13} {'occupation':<18} {'first':>7}  {'drifted':>7}")
        for i, (row, a, b) in enumerate(zip(sample, first, second, strict=True), 1):
            print(f"  {i:>3}  {row['age']:>3}  {row['education']:<13} {row['occupation']:<18} {a:7.3f}  {b:7.3f}")
        if not any(abs(a - b) > 1e-6 for a, b in zip(first, second, strict=True)):
            raise DemoFailed("the scores did not change: the endpoint does not serve the retrained model")
        print(f"\nTimeline of the retrain on {two.label} (seconds after the data landed):")
        for at, what in sorted(two.steps):
            print(f"  {at - two.landed:7.1f}  {what}")
        print("\nTimings (data landed -> 100 % traffic on the new deployment -> verified):")
        for landing in (one, two):
            print(f"  {landing.label:<13} {landing.full_traffic - landing.landed:6.1f} s -> "
                  f"{landing.verified - landing.landed:6.1f} s")
        deployments, traffic = self.ws.deployments(ENDPOINT), self.ws.traffic(ENDPOINT)
        print(f"\nDeployments of '{ENDPOINT}' (as ARM shows them):")
        for name, dep in sorted(deployments.items(), key=lambda d: -traffic.get(d[0], 0)):
            note = "live" if traffic.get(name) else "kept at 0 %: a rollback is a traffic switch"
            print(f"  {name}  {traffic.get(name, 0):>3} %  {dep['state']:<10} {dep['model']}  ({note})")
        if traffic.get(two.deployment) != 100 or one.deployment not in deployments:
            raise DemoFailed(f"expected {two.deployment} at 100 % and {one.deployment} kept: {traffic}")
        self.print_history(two.run, "Events the app published (its Event Grid topic):")
        print("\nThe workspace's events (its Event Grid system topic; RunCompleted and RunStatusChanged go to the "
              "app):")
        for event in self.ws.events():
            data = event.get("data") or {}
            what = (f"{data['runId']} {data.get('runStatus') or ''}" if data.get("runId") else
                    f"{data['ModelName']}:{data['ModelVersion']}" if data.get("ModelName") else
                    f"{data.get('ServiceName')} <- {data.get('ModelIds')}")
            print(f"  {event['eventTime'][:23]}  {event['eventType'].removeprefix(AML):<17} {what}")
        print(f"\nDemo finished in {time.monotonic() - self.t0:.1f} s: '{ENDPOINT}' serves the model retrained on "
              f"the drifted data from deployment {two.deployment}; data landed -> 100 % traffic "
              f"{two.full_traffic - two.landed:.1f} s.")


OPENING = """\
The problem: a model scoring census records (does this person earn >50K?) was trained on last year's population;
the population drifts, and the live endpoint's scores drift away from the truth with it.
What you will see, on the Azure Machine Learning (v2) stand-in: an online endpoint created through the app -> data
lands in blob storage -> an Azure ML job trains -> its RunCompleted event reaches the app -> the model passes the gate
-> a model version, a new deployment with 0 % traffic, smoke-scored -> traffic in steps -> verified, the previous
deployment kept at 0 % for a rollback; no key anywhere for Azure ML (the app's managed identity). A new endpoint
serves nothing until its first model, so data lands twice: a first model, then drifted data.
"""
