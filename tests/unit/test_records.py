"""Records to table entities and back, and to the API's camelCase, through pydantic (no hand mapping)."""

from __future__ import annotations

from shared.adapters.ledger import attempt_key, current_key, from_entity, to_entity
from shared.records import Current, Deployment, Run, iso, run_id_for


class Entity(dict):
    """What azure-data-tables returns: a dict of properties with `metadata` beside it."""

    def __init__(self, data: dict, etag: str) -> None:
        super().__init__(data)
        self.metadata = {"etag": etag}


def test_a_run_round_trips_through_a_table_entity():
    run = Run(id="r1", target="t", endpoints=["a", "b"], metrics={"AUC": 0.91}, smoke_row={"age": "39"},
              rows=2000, claimed_until=12.5)
    entity = to_entity(run, "run", run.id)
    assert entity["PartitionKey"] == "run" and entity["RowKey"] == "r1"
    assert entity["endpoints"] == '["a", "b"]' and entity["metrics"] == '{"AUC": 0.91}'
    assert "etag" not in entity and "job_id" not in entity  # no None cells, no etag column
    back = from_entity(Run, Entity({**entity, "Timestamp": "x"}, 'W/"1"'))
    assert back == run.model_copy(update={"etag": 'W/"1"'})
    assert back.etag == 'W/"1"' and back.metrics == {"AUC": 0.91} and back.smoke_row == {"age": "39"}


def test_the_api_sees_camel_case_and_the_ledger_snake_case():
    dep = Deployment(id="d", target="t", endpoint="e", run_id="r", model_path="models/m", duration_ms=5)
    assert {"runId", "modelPath", "durationMs", "createdAt"} <= set(dep.model_dump(by_alias=True))
    assert {"run_id", "model_path"} <= set(to_entity(dep, "t", "x"))
    assert Deployment.model_validate({"id": "d", "target": "t", "endpoint": "e", "runId": "r"}).run_id == "r"


def test_current_serves_a_deployment():
    cur = Current(target="t", endpoint="e", lease_owner="me")
    cur.serve(Deployment(id="d", target="t", endpoint="e", run_id="r", model_base="b/", model_path="m",
                         data_time="2026-01-01T00:00:00.000Z", metric=0.8))
    assert (cur.deployment_id, cur.run_id, cur.model_path, cur.metric, cur.lease_owner) == ("d", "r", "m", 0.8, "me")


def test_keys_and_ids_are_stable_and_safe():
    assert run_id_for("training-data/a.csv", '"0x1"') == run_id_for("training-data/a.csv", "0x1")
    assert run_id_for("training-data/a.csv", "0x1") != run_id_for("training-data/a.csv", "0x2")
    assert current_key("a/b#c") == "current~a_b_c" and attempt_key("e~x", "run-1") == "dep~e_x~run-1"
    from datetime import UTC, datetime, timedelta, timezone

    moment = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert iso(moment) == "2026-01-01T12:00:00.000Z" == iso(moment.astimezone(timezone(timedelta(hours=5))))
