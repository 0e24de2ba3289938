"""What a command job runs here: the classic emulator's learner (two-class logistic regression, a JSON model
document, Studio's Evaluate Model metrics) on whatever tabular CSV the job's `uri_file` input names.

The table's schema is inferred: the label column is the `label_column` literal input (default `income` when the
table has it, else its last column); every other column is a feature, numeric when all its non-empty values parse
as numbers, categorical otherwise (`exclude_columns`, comma-separated, drops some). The positive class is the
`positive_class` literal input, else `>50K` for the census labels, else the larger of the two label values in sort
order (`1` for 0/1, `yes` for no/yes). `test_fraction` (0.25) and `seed` (0) set the held-out split.

Outputs (see README "Job outputs"): `<model>/model.json` (the model document, never pickle) and
`<evaluation>/metrics.json` + `<evaluation>/evaluation.csv` (the classic Evaluate Model table).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from tools.emulator import census_schema
from tools.emulator.learner import EVALUATION_COLUMNS, DataError, Schema, format_metric, train_and_evaluate
from tools.emulator.tables import read_table, write_table


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def infer_schema(header: list[str], columns: dict[str, list[str]], label: str | None, positive: str | None,
                 exclude: list[str]) -> Schema:
    label = label or (census_schema.LABEL if census_schema.LABEL in columns else header[-1])
    if label not in columns:
        raise DataError(f"label column '{label}' is not in the table (columns: {', '.join(header[:20])})")
    classes = sorted({v.strip() for v in columns[label]} - {""})
    if len(classes) != 2:
        raise DataError(f"label column '{label}' must have exactly two classes; it has {len(classes)}: "
                        f"{', '.join(classes[:5])}")
    if positive is None:
        positive = census_schema.POSITIVE if census_schema.POSITIVE in classes else classes[-1]
    if positive not in classes:
        raise DataError(f"positive class '{positive}' is not one of the label's values {classes}")
    negative = classes[0] if classes[1] == positive else classes[1]
    numeric: list[str] = []
    categorical: list[str] = []
    for name in header:
        if name == label or name in exclude:
            continue
        values = [v.strip() for v in columns[name] if v.strip() not in ("", "?")]
        (numeric if values and all(_is_number(v) for v in values) else categorical).append(name)
    if not numeric and not categorical:
        raise DataError("the table has no feature columns besides the label")
    return Schema(numeric=tuple(numeric), categorical=tuple(categorical), label=label, positive=positive,
                  negative=negative)


def train(data: bytes, name: str, literals: dict[str, str], job: str) -> dict[str, tuple[bytes, str]]:
    """Train on a CSV; return the output files: relative name -> (bytes, content type)."""
    header, columns = read_table(data, name)
    exclude = [c.strip() for c in literals.get("exclude_columns", "").split(",") if c.strip()]
    schema = infer_schema(header, columns, literals.get("label_column"), literals.get("positive_class"), exclude)
    rows = len(columns[schema.label])
    if rows < 20:
        raise DataError(f"{rows} rows are too few to train and evaluate (at least 20)")
    try:
        fraction, seed = float(literals.get("test_fraction", "0.25")), int(literals.get("seed", "0"))
    except ValueError as exc:
        raise DataError(f"test_fraction/seed: {exc}") from None
    if not 0.05 <= fraction <= 0.9:
        raise DataError("test_fraction must be between 0.05 and 0.9")
    features = {c: columns[c] for c in (*schema.numeric, *schema.categorical)}
    model, metrics = train_and_evaluate(features, columns[schema.label], test_fraction=fraction, seed=seed,
                                        schema=schema)
    document = dict(model.document, trainedOn=name, job=job)
    test_rows = int(round(rows * fraction))
    summary = {"job": job, "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
               "primaryMetric": "AUC",
               "metrics": {k: (int(v) if isinstance(v, int) else float(v)) for k, v in metrics.items()},
               "label": {"column": schema.label, "positive": schema.positive, "negative": schema.negative},
               "rows": {"total": rows, "train": rows - test_rows, "test": test_rows},
               "features": {"numeric": list(schema.numeric), "categorical": list(schema.categorical)}}
    table = write_table(EVALUATION_COLUMNS, [[format_metric(metrics[c]) for c in EVALUATION_COLUMNS]],
                        "evaluation.csv")
    return {"model/model.json": (json.dumps(document).encode(), "application/json"),
            "evaluation/metrics.json": (json.dumps(summary, indent=2).encode(), "application/json"),
            "evaluation/evaluation.csv": (table, "text/csv")}


def literal_inputs(inputs: dict[str, Any]) -> dict[str, str]:
    return {name: str(spec.get("value", "")) for name, spec in inputs.items()
            if isinstance(spec, dict) and str(spec.get("jobInputType", "")).lower() == "literal"}
