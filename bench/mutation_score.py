"""Mutation score of the contract modules, from mutmut's results (``mutants/**/*.meta``).

    nice -n 15 .venv/bin/mutmut run --max-children 2 "lancert.terminal.codes*"   # one module group at a time
    .venv/bin/python bench/mutation_score.py [--mutants OLD/mutants NEW/mutants ...] [--survivors]

Survivors are counted as mutmut's "survived" plus "no tests" (a mutant no selected test runs is not
caught either) plus "suspicious"; the score is killed (timeouts included) over the mutants checked.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

# mutmut 3's exit codes (mutmut.stats.status_by_exit_code), folded into what the score needs.
KILLED = {1, 3, 36, 24, -24, 152, 255, 37, -9, -11}
SURVIVED = {0}
NO_TESTS = {5, 33}
NOT_CHECKED = {None, 2, 34}


def module_of(meta: Path, root: Path) -> str:
    return str(meta.relative_to(root).with_suffix("").with_suffix("")).replace("/", ".").removeprefix("src.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mutants", type=Path, nargs="+", default=[Path("mutants")],
        help="mutants/ directories, oldest first: a later run's verdict on a mutant replaces an earlier one "
        "(e.g. survivors re-run in a fresh copy after new tests)",
    )
    parser.add_argument("--survivors", action="store_true", help="list every surviving mutant")
    args = parser.parse_args()
    rows: dict[str, Counter[str]] = {}
    survivors: list[str] = []
    metas: dict[str, dict[str, int | None]] = {}
    for directory in args.mutants:
        for meta in sorted(directory.rglob("*.py.meta")):
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            merged = metas.setdefault(module_of(meta, directory), {})
            for name, code in codes.items():
                if code is not None or name not in merged:
                    merged[name] = code
    for module, codes in sorted(metas.items()):
        counts: Counter[str] = Counter()
        for name, code in codes.items():
            kind = ("killed" if code in KILLED else "survived" if code in SURVIVED
                    else "no tests" if code in NO_TESTS else "not checked" if code in NOT_CHECKED
                    else "suspicious")
            counts[kind] += 1
            if kind in ("survived", "no tests", "suspicious"):
                survivors.append(f"{name}  ({kind})")
        rows[module] = counts
    total: Counter[str] = Counter()
    print(f"{'module':36} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8} {'unchecked':>9} "
          f"{'score':>6}")
    for module, counts in rows.items():
        total.update(counts)
        print(_row(module, counts))
    print(_row("all", total))
    if args.survivors:
        print("\n".join(["", *survivors]))


def _row(module: str, c: Counter[str]) -> str:
    checked = c["killed"] + c["survived"] + c["no tests"] + c["suspicious"]
    score = f"{100 * c['killed'] / checked:5.1f}%" if checked else "    -"
    return (f"{module:36} {sum(c.values()):7} {c['killed']:7} {c['survived'] + c['suspicious']:8} "
            f"{c['no tests']:8} {c['not checked']:9} {score:>6}")


if __name__ == "__main__":
    main()
