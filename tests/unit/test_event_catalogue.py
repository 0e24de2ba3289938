"""The event catalogue is the one source of what each `Retrain.*` event carries: the docs' table and the JSON Schema
for consumers are generated from it (tools/event_docs.py), and these tests fail when they drift apart."""

from __future__ import annotations

import inspect
import json

import shared.events as catalogue
from shared.events import CATALOGUE, EndpointUpdated, Event, json_schema, markdown_table
from tools.event_docs import DOC, END, SCHEMA, START, with_table


def test_every_event_record_is_in_the_catalogue_once():
    records = {c for _, c in inspect.getmembers(catalogue, inspect.isclass) if issubclass(c, Event) and c is not Event}
    assert records == set(CATALOGUE) and len(CATALOGUE) == len(set(CATALOGUE))
    assert all(e.when and e.about for e in CATALOGUE)


def test_the_docs_table_and_the_schema_file_are_the_catalogues():
    doc = DOC.read_text()
    assert doc.count(START) == 1 and doc.count(END) == 1
    assert with_table(doc) == doc, "docs/events.md is stale: run .venv/bin/python -m tools.event_docs"
    assert json.loads(SCHEMA.read_text()) == json_schema(), "docs/events.schema.json is stale: run tools.event_docs"


def test_a_changed_event_would_be_caught():
    """The check can fail: a table missing a field, or one field more, is not the catalogue's."""
    table = markdown_table()
    assert "`deploymentId`" in table
    doc = f"# Events\n{START}\n{table.replace('`deploymentId`', '`deployment`')}\n{END}\n"
    assert with_table(doc) != doc


def test_event_data_is_camel_case_without_the_subject_and_matches_its_schema():
    event = EndpointUpdated(subject="default/a", run_id="r1", endpoint="a", target="default", model="models/r1/m",
                            metrics={"AUC": 0.9}, operation="promote", deployment_id="run-r1")
    data = event.data()
    assert data == {"runId": "r1", "endpoint": "a", "target": "default", "model": "models/r1/m",
                    "metrics": {"AUC": 0.9}, "operation": "promote", "deploymentId": "run-r1"}
    schema = json_schema()["$defs"]["EndpointUpdated"]
    assert set(data) <= set(schema["properties"]) and "subject" not in schema["properties"]
    assert set(schema["required"]) <= set(data) and schema["title"] == "Retrain.EndpointUpdated"
