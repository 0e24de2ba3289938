"""The CI/CD workflow: a push never cancels a running deploy, and the header names the OIDC subject GitHub really
issues for a job with `environment:`."""

from __future__ import annotations

import yaml

from tests.infra.bicep import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def test_a_new_push_never_cancels_a_running_deploy():
    spec = yaml.safe_load(WORKFLOW.read_text())
    assert "concurrency" not in spec, "a workflow-level group with cancel-in-progress would cancel the deploy job"
    deploy = spec["jobs"]["deploy"]
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert spec["jobs"]["test"]["concurrency"]["cancel-in-progress"] is True


def test_the_header_names_the_environment_subject():
    spec = yaml.safe_load(WORKFLOW.read_text())
    environment = spec["jobs"]["deploy"]["environment"]
    text = WORKFLOW.read_text()
    assert f"repo:<owner>/<repo>:environment:{environment}" in text
    assert spec["jobs"]["deploy"]["permissions"]["id-token"] == "write"
