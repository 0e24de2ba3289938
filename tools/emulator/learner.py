"""The emulator's learner: two-class logistic regression, its JSON model document, scoring and evaluation.

A trained model is a JSON document (never pickle): the feature encoding (numeric means/scales, categorical
levels), the weights and the label. `check_document` is what PATCH validates (is this a model file at all);
`load_model` is what an endpoint does when the model becomes active (a model can pass the first and fail the
second, which is how "an endpoint that cannot load its model" shows up). The metrics follow Studio's Evaluate Model
for binary classification.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tools.emulator import census_schema as s

MODEL_FORMAT = "studio-classic-emulator/ilearner"
MODEL_FORMAT_VERSION = 1
LEARNER_NAME = "Two-Class Logistic Regression"
EVALUATION_COLUMNS = ["True Positive", "False Negative", "False Positive", "True Negative", "Accuracy",
                      "Precision", "Recall", "F-Score", "AUC", "Average Log Loss", "Training Log Loss"]
_EPS = 1e-15


class ModelError(ValueError):
    """A model document that is not a model, or that cannot be loaded."""


class DataError(ValueError):
    """Training or scoring data that does not fit the schema."""


@dataclass(frozen=True)
class Model:
    """A loaded, ready-to-score model."""

    numeric: list[tuple[str, float, float]]  # (column, mean, scale)
    categorical: list[tuple[str, list[str]]]  # (column, levels)
    weights: np.ndarray
    bias: float
    positive: str
    negative: str
    threshold: float
    document: Mapping[str, Any]

    @property
    def feature_columns(self) -> list[str]:
        return [c for c, _, _ in self.numeric] + [c for c, _ in self.categorical]

    def design(self, columns: Mapping[str, Sequence[str]], n: int) -> np.ndarray:
        """Encode raw string columns into the design matrix (numeric standardised, categoricals one-hot)."""
        parts: list[np.ndarray] = []
        for name, mean, scale in self.numeric:
            parts.append(((parse_numeric(name, columns[name], mean) - mean) / scale)[:, None])
        for name, levels in self.categorical:
            index = {level: i for i, level in enumerate(levels)}
            onehot = np.zeros((n, len(levels)))
            for row, value in enumerate(columns[name]):
                i = index.get(str(value).strip())
                if i is not None:  # an unseen level encodes as all zeros
                    onehot[row, i] = 1.0
            parts.append(onehot)
        return np.hstack(parts) if parts else np.zeros((n, 0))

    def predict_proba(self, columns: Mapping[str, Sequence[str]], n: int) -> np.ndarray:
        missing = [c for c in self.feature_columns if c not in columns]
        if missing:
            raise DataError(f"missing input column(s): {', '.join(missing)}")
        return _sigmoid(self.design(columns, n) @ self.weights + self.bias)

    def label(self, proba: np.ndarray) -> list[str]:
        return [self.positive if p >= self.threshold else self.negative for p in proba]


def parse_numeric(name: str, values: Sequence[str], fill: float, header_lines: int | None = None) -> np.ndarray:
    """Parse a numeric column; errors say "row N", or "line N" of the file when `header_lines` is given."""

    def where(i: int) -> str:
        return f"row {i + 1}" if header_lines is None else f"line {i + 1 + header_lines}"

    out = np.empty(len(values))
    for i, raw in enumerate(values):
        text = str(raw).strip()
        if text in ("", "?"):
            out[i] = fill
            continue
        try:
            out[i] = float(text)
        except ValueError:
            raise DataError(f"column '{name}', {where(i)}: '{text[:40]}' is not a number") from None
        if not math.isfinite(out[i]):
            raise DataError(f"column '{name}', {where(i)}: '{text[:40]}' is not a finite number")
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -35, 35))))


@dataclass(frozen=True)
class Schema:
    """What a training table looks like: its feature columns, its label column and the label's two classes.
    The default is the Adult census schema of the classic training experiment; the Azure ML stand-in's jobs pass
    the schema of the table they were given."""

    numeric: tuple[str, ...] = tuple(s.NUMERIC)
    categorical: tuple[str, ...] = tuple(s.CATEGORICAL)
    label: str = s.LABEL
    positive: str = s.POSITIVE
    negative: str = s.NEGATIVE


CENSUS = Schema()


def fit(columns: Mapping[str, Sequence[str]], labels: Sequence[str], l2: float = 1.0,
        max_iter: int = 30, schema: Schema = CENSUS) -> Model:
    """Fit logistic regression with Newton's method (IRLS) and an L2 penalty on the weights."""
    n = len(labels)
    y = np.asarray([1.0 if v.strip() == schema.positive else 0.0 for v in labels])
    unknown = {v.strip() for v in labels} - {schema.positive, schema.negative}
    if unknown:
        raise DataError(f"label column '{schema.label}' has value(s) other than {schema.negative}/"
                        f"{schema.positive}: {', '.join(sorted(unknown)[:3])}")
    if y.min() == y.max():
        raise DataError(f"label column '{schema.label}' has a single class; two are needed to train")
    numeric = []
    for name in schema.numeric:
        values = parse_numeric(name, columns[name], float("nan"))
        mean = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
        scale = float(np.nanstd(values)) or 1.0
        numeric.append((name, mean, scale))
    categorical = []
    for name in schema.categorical:
        levels = sorted({str(v).strip() for v in columns[name]})
        categorical.append((name, levels))
    draft = Model(numeric, categorical, np.zeros(0), 0.0, schema.positive, schema.negative, 0.5, {})
    x = np.hstack([np.ones((n, 1)), draft.design(columns, n)])
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0  # no penalty on the bias
    for _ in range(max_iter):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - y) + penalty * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-6:
            break
    model = Model(numeric, categorical, w[1:], float(w[0]), schema.positive, schema.negative, 0.5, {})
    return load_model(to_document(model, training_rows=n, label=schema.label))


def to_document(model: Model, training_rows: int, label: str = s.LABEL) -> dict[str, Any]:
    return {
        "format": MODEL_FORMAT,
        "formatVersion": MODEL_FORMAT_VERSION,
        "learner": LEARNER_NAME,
        "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "trainingRows": training_rows,
        "label": {"column": label, "positive": model.positive, "negative": model.negative},
        "threshold": model.threshold,
        "numeric": [{"name": c, "mean": m, "scale": sc} for c, m, sc in model.numeric],
        "categorical": [{"name": c, "levels": levels} for c, levels in model.categorical],
        "weights": [float(v) for v in model.weights],
        "bias": model.bias,
    }


def check_document(doc: object) -> None:
    """What PATCH checks: the file is a model document of a known format. Raises ModelError."""
    if not isinstance(doc, dict):
        raise ModelError("the file is not a trained model (expected a model document)")
    if doc.get("format") != MODEL_FORMAT:
        raise ModelError(f"the file is not a trained model of a known format (format={doc.get('format')!r})")
    if doc.get("formatVersion") != MODEL_FORMAT_VERSION:
        raise ModelError(f"unsupported model format version {doc.get('formatVersion')!r}")
    if not isinstance(doc.get("learner"), str):
        raise ModelError("the model document names no learner")


def load_model(doc: Mapping[str, Any]) -> Model:
    """Build a scoring model from a document; raises ModelError when it is inconsistent."""
    check_document(doc)
    try:
        numeric = [(str(f["name"]), float(f["mean"]), float(f["scale"])) for f in doc["numeric"]]
        categorical = [(str(f["name"]), [str(v) for v in f["levels"]]) for f in doc["categorical"]]
        weights = np.asarray([float(v) for v in doc["weights"]])
        bias = float(doc["bias"])
        label = doc["label"]
        positive, negative = str(label["positive"]), str(label["negative"])
        threshold = float(doc.get("threshold", 0.5))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"the model document is incomplete or malformed: {exc!r}") from None
    expected = len(numeric) + sum(len(levels) for _, levels in categorical)
    if len(weights) != expected:
        raise ModelError(f"the model has {len(weights)} weights but its features need {expected}")
    if not (np.all(np.isfinite(weights)) and math.isfinite(bias)) or any(sc <= 0 for _, _, sc in numeric):
        raise ModelError("the model has non-finite weights or a non-positive scale")
    return Model(numeric, categorical, weights, bias, positive, negative, threshold, doc)


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def evaluate(y: np.ndarray, p: np.ndarray, train_prior: float, threshold: float = 0.5) -> dict[str, float]:
    """Studio's Evaluate Model metrics for binary classification on held-out labels `y` and scores `p`."""
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fn = int(np.sum(~pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    n = max(len(y), 1)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f_score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    pc = np.clip(p, _EPS, 1 - _EPS)
    log_loss = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))) if len(y) else float("nan")
    prior = min(max(train_prior, _EPS), 1 - _EPS)
    prior_loss = float(-np.mean(y * math.log(prior) + (1 - y) * math.log(1 - prior))) if len(y) else float("nan")
    # Studio: "a single score that represents the advantage of the classifier over a random prediction".
    training_log_loss = 1.0 - log_loss / prior_loss if prior_loss else float("nan")
    return {"True Positive": tp, "False Negative": fn, "False Positive": fp, "True Negative": tn,
            "Accuracy": (tp + tn) / n, "Precision": precision, "Recall": recall, "F-Score": f_score,
            "AUC": auc(y, p), "Average Log Loss": log_loss, "Training Log Loss": training_log_loss}


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Studio's Split Data (randomized): returns (train, test) row indices."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def train_and_evaluate(columns: Mapping[str, list[str]], labels: list[str], test_fraction: float = 0.25,
                       seed: int = 0, schema: Schema = CENSUS) -> tuple[Model, dict[str, float]]:
    """Split, fit on the first part, evaluate on the held-out part (what the training experiment does)."""
    n = len(labels)
    for name in schema.numeric:  # check the whole file first, so an error names its line in the file
        parse_numeric(name, columns[name], 0.0, header_lines=1)
    train, test = split_indices(n, test_fraction, seed)
    if len(test) == 0 or len(train) == 0:
        raise DataError(f"{n} rows are too few to split into training and evaluation sets")

    def take(idx: np.ndarray) -> dict[str, list[str]]:
        return {c: [v[i] for i in idx] for c, v in columns.items()}

    train_labels = [labels[i] for i in train]
    model = fit(take(train), train_labels, schema=schema)
    test_cols = take(test)
    p = model.predict_proba(test_cols, len(test))
    y = np.asarray([1.0 if labels[i].strip() == schema.positive else 0.0 for i in test])
    prior = sum(1 for v in train_labels if v.strip() == schema.positive) / len(train_labels)
    return model, evaluate(y, p, prior)


def format_metric(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))
