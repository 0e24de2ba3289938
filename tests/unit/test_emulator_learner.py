"""The emulator's learner and census generator: real training, metrics, model documents."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from tools.emulator import census_schema as s
from tools.emulator.census import csv_text
from tools.emulator.census import main as census_main
from tools.emulator.learner import DataError, ModelError, auc, check_document, evaluate, load_model, train_and_evaluate
from tools.emulator.tables import read_table


def columns(text: str) -> dict[str, list[str]]:
    return read_table(text.encode(), "x.csv")[1]


def test_census_has_the_adult_schema_and_is_reproducible():
    text = csv_text(500, seed=3)
    assert text == csv_text(500, seed=3) and text != csv_text(500, seed=4)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == s.COLUMNS and len(rows) == 500
    assert {r["income"] for r in rows} == {">50K", "<=50K"}
    assert all(17 <= int(r["age"]) <= 90 and 1 <= int(r["hours-per-week"]) <= 99 for r in rows)
    assert {r["relationship"] for r in rows if r["marital-status"] == "Married-civ-spouse"} <= {"Husband", "Wife"}
    for r in rows:
        assert s.EDUCATION.index(r["education"]) + 1 == int(r["education-num"])


def test_census_cli_writes_a_file(tmp_path):
    out = tmp_path / "c.csv"
    assert census_main(["--rows", "10", "--seed", "1", "--drift", "0.5", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 11


def test_training_learns_and_drift_changes_the_model():
    base = columns(csv_text(4000, seed=1))
    drifted = columns(csv_text(4000, seed=1, drift=1.0))
    m1, ev1 = train_and_evaluate({c: base[c] for c in s.FEATURES}, base[s.LABEL], seed=1)
    m2, _ = train_and_evaluate({c: drifted[c] for c in s.FEATURES}, drifted[s.LABEL], seed=1)
    assert 0.75 < ev1["AUC"] < 1.0 and ev1["Accuracy"] > 0.7
    probe = columns(csv_text(50, seed=9))
    p1, p2 = m1.predict_proba(probe, 50), m2.predict_proba(probe, 50)
    assert np.max(np.abs(p1 - p2)) > 0.05


def test_model_document_round_trip_is_json_and_scores_identically():
    cols = columns(csv_text(1000, seed=2))
    model, _ = train_and_evaluate({c: cols[c] for c in s.FEATURES}, cols[s.LABEL])
    reloaded = load_model(json.loads(json.dumps(model.document)))
    probe = columns(csv_text(20, seed=5))
    assert np.allclose(model.predict_proba(probe, 20), reloaded.predict_proba(probe, 20))


@pytest.mark.parametrize("doc", [[], {"format": "x"}, {"format": "studio-classic-emulator/ilearner"}])
def test_check_document_refuses_non_models(doc):
    with pytest.raises(ModelError):
        check_document(doc)


def test_load_refuses_inconsistent_weights():
    cols = columns(csv_text(500, seed=2))
    model, _ = train_and_evaluate({c: cols[c] for c in s.FEATURES}, cols[s.LABEL])
    doc = dict(model.document, weights=model.document["weights"][:-1])
    check_document(doc)  # still looks like a model
    with pytest.raises(ModelError, match="weights"):
        load_model(doc)


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.3).astype(float)
    p = np.round(rng.random(200), 1)  # many ties
    pos, neg = p[y == 1], p[y == 0]
    pairwise = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert auc(y, p) == pytest.approx(pairwise)


def test_evaluate_confusion_counts():
    y = np.array([1, 1, 0, 0, 1.0])
    p = np.array([0.9, 0.2, 0.6, 0.1, 0.7])
    ev = evaluate(y, p, train_prior=0.5)
    assert (ev["True Positive"], ev["False Negative"], ev["False Positive"], ev["True Negative"]) == (2, 1, 1, 1)
    assert ev["Precision"] == pytest.approx(2 / 3) and ev["Recall"] == pytest.approx(2 / 3)


def test_training_errors_name_the_problem():
    cols = columns(csv_text(100, seed=2).replace(">50K", "maybe"))
    with pytest.raises(DataError, match="other than"):
        train_and_evaluate({c: cols[c] for c in s.FEATURES}, cols[s.LABEL])
    cols = columns(csv_text(100, seed=2))
    cols["age"][5] = "old"
    with pytest.raises(DataError, match="line 7"):
        train_and_evaluate({c: cols[c] for c in s.FEATURES}, cols[s.LABEL])
