"""A job on a real public dataset - the Wisconsin breast cancer data scikit-learn ships (569 rows, 30 numeric
features) - reaches the held-out accuracy of a scikit-learn baseline (standardised logistic regression) within
3 points, and the deployed model scores the baseline's held-out rows as well."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
from azure.storage.blob import BlobServiceClient
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.integration.azureml.arm import Arm
from tests.integration.azureml.conftest import unique, upload

TOLERANCE = 0.03


def test_breast_cancer_job_matches_a_scikit_learn_baseline(arm: Arm):
    data = load_breast_cancer()
    features = [str(f) for f in data.feature_names]
    labels = [str(data.target_names[t]) for t in data.target]  # "malignant" / "benign"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*features, "diagnosis"])
    writer.writerows([[repr(float(v)) for v in row] + [label] for row, label in zip(data.data, labels, strict=True)])
    url = upload(arm.m, "training-data", "azureml/breast-cancer.csv", buf.getvalue())

    x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.25, random_state=0,
                                                        stratify=data.target)
    baseline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x_train, y_train)
    baseline_accuracy = float(baseline.score(x_test, y_test))

    name = unique("bc")
    r = arm.submit_job(name, url, label_column="diagnosis", positive_class="malignant", test_fraction="0.25")
    assert r.status_code == 201, r.text
    job = arm.wait_job(name)
    assert job["properties"]["status"] == "Completed", job
    prefix = "azureml://datastores/workspaceblobstore/paths/"
    metrics_path = job["properties"]["outputs"]["evaluation"]["uri"][len(prefix):] + "metrics.json"
    blob = BlobServiceClient.from_connection_string(arm.m["storage"]["connection_string"]).get_blob_client(
        arm.aml["datastore"]["container"], metrics_path)
    metrics = json.loads(blob.download_blob().readall())
    assert metrics["rows"] == {"total": 569, "train": 427, "test": 142}
    assert metrics["features"]["numeric"] == features and metrics["features"]["categorical"] == []
    job_accuracy = metrics["metrics"]["Accuracy"]
    assert job_accuracy >= baseline_accuracy - TOLERANCE, (job_accuracy, baseline_accuracy)
    assert metrics["metrics"]["AUC"] > 0.97

    assert arm.register_model("breast-cancer", name, f"azureml://jobs/{name}/outputs/model") \
        .status_code == 201
    endpoint = unique("bc")
    arm.create_endpoint(endpoint)
    arm.create_deployment(endpoint, "blue", arm.model_id("breast-cancer", name))
    assert arm.poll(arm.set_traffic(endpoint, {"blue": 100}))["status"] == "Succeeded"
    scored = arm.score(arm.get(f"/onlineEndpoints/{endpoint}"), arm.keys(endpoint)["primaryKey"],
                       {"input_data": {"columns": features, "data": x_test.tolist()}})
    assert scored.status_code == 200, scored.text
    predicted = np.array([1 if row["label"] == "benign" else 0 for row in scored.json()])
    assert float((predicted == y_test).mean()) >= baseline_accuracy - TOLERANCE
