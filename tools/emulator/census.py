"""Synthetic Adult census data: `python -m tools.emulator.census --rows N --seed S [--drift X] --out FILE`.

Rows follow the Adult schema (15 columns, realistic categories and ranges). The label is drawn from a logistic
function of the features, so a model trained on it has an AUC well above 0.5. `--drift` (0 = none, 1 = strong)
shifts the population (older, more educated, longer hours) and how the label depends on the features, so a model
retrained on drifted data scores the same rows differently.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator
from typing import IO

import numpy as np

from tools.emulator import census_schema as s

CHUNK_ROWS = 20_000


def _choice(rng: np.random.Generator, table: dict[str, float] | list[str], n: int,
            weights: list[float] | None = None) -> np.ndarray:
    names = list(table) if isinstance(table, dict) else table
    p = np.asarray(list(table.values()) if isinstance(table, dict) else weights, dtype=float)
    return rng.choice(np.asarray(names, dtype=object), size=n, p=p / p.sum())


def generate_chunk(rng: np.random.Generator, n: int, drift: float = 0.0) -> list[np.ndarray]:
    """Generate `n` rows as one array per column, in schema order."""
    age = np.clip(rng.gamma(4.0, 9.5, n) + 15 + 6 * drift, 17, 90).astype(int)
    workclass = _choice(rng, s.WORKCLASS, n)
    fnlwgt = np.clip(rng.lognormal(12.0, 0.55, n), 12_285, 1_484_705).astype(int)
    edu_w = np.asarray(s.EDUCATION_WEIGHTS)
    if drift:
        edu_w = edu_w * np.exp(drift * 0.25 * (np.arange(16) - 9))
    edu_idx = rng.choice(16, size=n, p=edu_w / edu_w.sum())
    education = np.asarray(s.EDUCATION, dtype=object)[edu_idx]
    education_num = edu_idx + 1
    marital = _choice(rng, s.MARITAL, n)
    occupation = _choice(rng, s.OCCUPATION, n)
    sex = np.where(rng.random(n) < 0.67, "Male", "Female").astype(object)
    married = marital == "Married-civ-spouse"
    other_rel = _choice(rng, {"Not-in-family": 0.45, "Own-child": 0.28, "Unmarried": 0.19,
                              "Other-relative": 0.08}, n)
    relationship = np.where(married, np.where(sex == "Male", "Husband", "Wife"), other_rel).astype(object)
    young = age < 24
    relationship = np.where(~married & young & (rng.random(n) < 0.6), "Own-child", relationship).astype(object)
    race = _choice(rng, s.RACE, n)
    country = _choice(rng, s.COUNTRY, n)
    hours = np.clip(np.round(rng.normal(40 + 3 * drift, 11, n)), 1, 99).astype(int)
    has_gain = rng.random(n) < 0.083
    gain = np.where(has_gain, np.clip(rng.lognormal(8.3, 1.1, n), 114, 99_999), 0).astype(int)
    has_loss = ~has_gain & (rng.random(n) < 0.047)
    loss = np.where(has_loss, np.clip(rng.normal(1870, 380, n), 155, 4356), 0).astype(int)

    occ_effect = np.vectorize(s.OCCUPATION_EFFECT.get, otypes=[float])(occupation)
    logit = (
        -8.7
        + 0.055 * np.minimum(age, 60) - 0.03 * np.maximum(age - 60, 0)
        + (0.33 - 0.08 * drift) * education_num
        + (2.1 - 1.1 * drift) * married
        + (0.035 + 0.03 * drift) * (hours - 40)
        + (1.0 + 0.6 * drift) * occ_effect
        + 0.35 * (sex == "Male")
        + 2.6 * (gain > 5000) - 1.0 * ((gain > 0) & (gain <= 5000))
        + 0.9 * (loss > 1800)
        + 0.4 * (workclass == "Self-emp-inc") - 0.5 * (workclass == "?")
        + 0.25 * drift * (country != "United-States")
    )
    positive = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    income = np.where(positive, s.POSITIVE, s.NEGATIVE).astype(object)
    return [age, workclass, fnlwgt, education, education_num, marital, occupation, relationship, race, sex,
            gain, loss, hours, country, income]


def generate_rows(rows: int, seed: int, drift: float = 0.0) -> Iterator[list[object]]:
    """Yield `rows` rows (lists in schema order), generated chunk by chunk in bounded memory."""
    rng = np.random.default_rng(seed)
    left = rows
    while left > 0:
        n = min(CHUNK_ROWS, left)
        cols = generate_chunk(rng, n, drift)
        yield from zip(*(c.tolist() for c in cols), strict=True)  # type: ignore[misc]
        left -= n


def write_csv(out: IO[str], rows: int, seed: int, drift: float = 0.0, header: bool = True,
              progress: bool = False) -> None:
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(s.COLUMNS)
    rng = np.random.default_rng(seed)
    done = 0
    while done < rows:
        n = min(CHUNK_ROWS, rows - done)
        writer.writerows(zip(*(c.tolist() for c in generate_chunk(rng, n, drift)), strict=True))
        done += n
        if progress:
            print(f"\rcensus: {done:,}/{rows:,} rows ({100 * done // rows}%)", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)


def csv_text(rows: int, seed: int, drift: float = 0.0) -> str:
    """The whole CSV as a string (small data sets: tests, demo, provisioning)."""
    import io

    buf = io.StringIO()
    write_csv(buf, rows, seed, drift)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.emulator.census", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True, help="number of data rows (header not counted)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same file)")
    parser.add_argument("--drift", type=float, default=0.0, help="population shift, 0 (none) to ~1 (strong)")
    parser.add_argument("--out", required=True, help="output file, or - for standard output")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be >= 0")
    if args.out == "-":
        write_csv(sys.stdout, args.rows, args.seed, args.drift)
    else:
        with open(args.out, "w", encoding="utf-8", newline="") as f:
            write_csv(f, args.rows, args.seed, args.drift, progress=not args.quiet and args.rows >= 100_000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
