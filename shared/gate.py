"""The gate: which models may serve. A rule per metric - a minimum (higher is better), a maximum (lower is better),
and an improvement the new model must make over the one serving - and a model passes when every rule holds.
Settings: `RETRAIN_GATE` (JSON: `{"AUC": {"min": 0.7, "improvement": 0.01}, "Log Loss": {"max": 0.5}}`), or the
single-metric `RETRAIN_GATE_METRIC` / `RETRAIN_GATE_MINIMUM` / `RETRAIN_GATE_MIN_IMPROVEMENT`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOWER_IS_BETTER = frozenset({"Average Log Loss", "Log Loss", "Mean Absolute Error", "Root Mean Squared Error",
                             "Relative Absolute Error", "Relative Squared Error"})


@dataclass(frozen=True)
class MetricRule:
    metric: str
    minimum: float | None = None  # the metric must be at least this (higher is better)
    maximum: float | None = None  # ... or at most this (lower is better)
    min_improvement: float | None = None  # over the serving model's value, in the better direction

    @property
    def higher_is_better(self) -> bool:
        """A maximum alone: lower is better; a minimum alone: higher; both: as the metric is known to be."""
        if self.maximum is not None and self.minimum is None:
            return False
        if self.minimum is not None and self.maximum is None:
            return True
        return self.metric not in LOWER_IS_BETTER

    def check(self, value: float | None) -> str | None:
        if value is None:
            return f"the evaluation has no '{self.metric}' metric"
        if self.minimum is not None and value < self.minimum:
            return f"{self.metric} {value:.4f} misses the minimum {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"{self.metric} {value:.4f} is over the maximum {self.maximum}"
        return None

    def improvement(self, value: float | None, serving: float | None) -> str | None:
        need = self.min_improvement
        if need is None or value is None or serving is None:
            return None
        better = value >= serving + need if self.higher_is_better else value <= serving - need
        return None if better else (f"{self.metric} {value:.4f} does not improve on the serving model's "
                                    f"{serving:.4f} by {need}")


@dataclass(frozen=True)
class Gate:
    rules: tuple[MetricRule, ...]

    @classmethod
    def single(cls, metric: str, minimum: float, min_improvement: float | None = None,
               higher_is_better: bool | None = None) -> Gate:
        """One metric; `minimum` is a maximum for a metric where lower is better."""
        lower = metric in LOWER_IS_BETTER if higher_is_better is None else not higher_is_better
        return cls((MetricRule(metric, None if lower else minimum, minimum if lower else None, min_improvement),))

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> Gate:
        """From `{"<metric>": {"min": x, "max": y, "improvement": z}, ...}`; ValueError naming what is wrong."""
        if not value:
            raise ValueError("RETRAIN_GATE names no metric")
        rules = []
        for metric, spec in value.items():
            if not isinstance(spec, Mapping) or not spec or set(spec) - {"min", "max", "improvement"}:
                raise ValueError(f"RETRAIN_GATE['{metric}'] must be an object with min, max and/or improvement")
            numbers = {k: v for k, v in spec.items() if v is not None}
            if any(isinstance(v, bool) or not isinstance(v, int | float) for v in numbers.values()):
                raise ValueError(f"RETRAIN_GATE['{metric}']: min, max and improvement are numbers")
            if "min" not in numbers and "max" not in numbers:
                raise ValueError(f"RETRAIN_GATE['{metric}'] needs a min or a max")
            if numbers.get("improvement", 0) < 0:
                raise ValueError(f"RETRAIN_GATE['{metric}']: improvement is not negative")
            rules.append(MetricRule(metric, numbers.get("min"), numbers.get("max"), numbers.get("improvement")))
        return cls(tuple(rules))

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(r.metric for r in self.rules)

    @property
    def primary(self) -> str:
        """The first metric: the one charted, and recorded alone where one number is kept."""
        return self.rules[0].metric

    def gated(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The gated metrics among `metrics`."""
        return {m: metrics[m] for m in self.metrics if m in metrics}

    def check(self, metrics: Mapping[str, float]) -> str | None:
        """None when a model with these metrics may serve, else why not (every rule it misses)."""
        problems = [p for r in self.rules if (p := r.check(metrics.get(r.metric))) is not None]
        return "; ".join(problems) or None

    def improvement(self, metrics: Mapping[str, float], serving: Mapping[str, float]) -> str | None:
        """None when the model improves enough on the serving model's metrics (or there is nothing to compare)."""
        problems = [p for r in self.rules if (p := r.improvement(metrics.get(r.metric), serving.get(r.metric)))]
        return "; ".join(problems) or None

    def describe(self) -> list[dict[str, Any]]:
        return [{"metric": r.metric, "min": r.minimum, "max": r.maximum, "improvement": r.min_improvement}
                for r in self.rules]
