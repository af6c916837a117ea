"""Writes a built StudyReport: report.md, CSV/JSON of every number, figures and the TensorBoard hparams
dashboard."""
from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from tfprune_mia.audit.study_report import StudyReport, defense_label, section_of
from tfprune_mia.audit.tables import METRIC_LABELS, TABLE_METRICS
from tfprune_mia import fs
from tfprune_mia.io import atomic_path, write_json

def _fmt(value: Optional[float], digits: int = 4, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _cell(row: Mapping[str, Any], metric: str) -> str:
    if f"{metric}_mean" not in row:
        return "-"
    text = _fmt(row[f"{metric}_mean"])
    if row["num_seeds"] > 1:
        text += f" ± {_fmt(row[f'{metric}_std'])}"
    low, high = row.get(f"{metric}_low"), row.get(f"{metric}_high")
    if low is not None and not math.isnan(low):
        text += f" [{_fmt(low)}, {_fmt(high)}]"
    return text


def _delta(row: Mapping[str, Any], metric: str) -> str:
    return (f"{_fmt(row[f'delta_{metric}'], sign=True)} [{_fmt(row[f'delta_{metric}_low'], sign=True)}, "
            f"{_fmt(row[f'delta_{metric}_high'], sign=True)}]")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + \
        ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def _sections(rows: Iterable[Mapping[str, Any]]) -> Dict[str, List[Mapping[str, Any]]]:
    grouped: Dict[str, List[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["section"]].append(row)
    return grouped


SHORT_VERDICTS = {"higher": "higher", "lower": "lower", "no detectable difference": "n.d."}


def _headline(report: StudyReport) -> List[str]:
    """The answer at a glance: one row per configuration, one column per attack, each cell the paired
    difference of the report metric with its interval and verdict, and a count of the verdicts."""
    metric, lines = report.metric, []
    for section, rows in _sections(report.deltas).items():
        attacks = list(dict.fromkeys(r["attack"] for r in rows))
        by_row: Dict[tuple, Dict[str, Mapping[str, Any]]] = defaultdict(dict)
        for r in rows:
            by_row[(r["pruner"], r["sparsity"], r["defense"], r["setting"])][r["attack"]] = r
        table = []
        for (pruner, sparsity, defense, setting), cells in by_row.items():
            first = next(iter(cells.values()))
            table.append([pruner, f"{sparsity:g}", defense, setting, _fmt(first["delta_test_accuracy"], 3, True)]
                         + [f"{_fmt(c[f'delta_{metric}'], 3, True)} [{_fmt(c[f'delta_{metric}_low'], 3, True)}, "
                            f"{_fmt(c[f'delta_{metric}_high'], 3, True)}] {SHORT_VERDICTS[c[f'verdict_{metric}']]}"
                            if (c := cells.get(attack)) else "-" for attack in attacks])
        counts = {v: sum(r[f"verdict_{metric}"] == v for r in rows) for v in SHORT_VERDICTS}
        lines += [f"### Headline: {section}", "",
                  f"Δ {METRIC_LABELS[metric]} (pruned - original) [95% paired CI] and verdict (n.d.: no detectable "
                  f"difference) per attack; of {len(rows)} differences, {counts['higher']} higher, "
                  f"{counts['lower']} lower, {counts['no detectable difference']} n.d.", ""]
        lines += _table(["pruner", "sparsity", "defense", "setting", "Δ test acc"] + attacks, table)
    return lines


def markdown(report: StudyReport, figures: Mapping[str, str], sources: Sequence[str] = ()) -> str:
    label = METRIC_LABELS[report.metric]
    configurations = report.configurations
    seeds = sorted({s for c in configurations for s in c.seeds}, key=str)
    lines = ["# Study report", "",
             f"{sum(len(c.runs) for c in configurations)} runs, {len(configurations)} configurations, seeds "
             f"{', '.join(str(s) for s in seeds)}" + (f"; sources: {', '.join(sources)}" if sources else "") + ".",
             f"Intervals are 95% bootstrap intervals over seeds and samples ({report.num_resamples} resamples; "
             "seeds resampled, then members and non-members within each seed). Means ± standard deviation over "
             "seeds.", ""]
    if report.gate.active:
        lines += ["## Release gate", "", "**PASSED**: every interval is within budget." if report.passed else
                  f"**FAILED**: {len(report.violations)} budget violation(s):", ""]
        lines += [f"- {v}" for v in report.violations] + [""]
    lines += ["## Does pruning leak more? leakage(pruned) - leakage(original)", "",
              "Per configuration and attack, the difference averaged over seeds, with a PAIRED 95% interval: both "
              "victims are scored on the same target samples (matched by dataset index), which are resampled "
              "together, and seeds are resampled on top. Verdict: `higher` / `lower` when the whole interval lies "
              "above / below zero, else `no detectable difference`.", ""]
    lines += _headline(report)
    for section, rows in _sections(report.deltas).items():
        lines += [f"### {section}", ""]
        lines += _table(["pruner", "sparsity", "defense", "setting", "attack", "seeds", "Δ test acc",
                         f"Δ {label} [95% CI]", "verdict", "Δ TPR@1%FPR [95% CI]", "verdict"],
                        [[r["pruner"], f"{r['sparsity']:g}", r["defense"], r["setting"], r["attack"], r["seeds"],
                          _fmt(r["delta_test_accuracy"], sign=True), _delta(r, report.metric),
                          r[f"verdict_{report.metric}"], _delta(r, "tpr_at_0.01_fpr"), r["verdict_tpr_at_0.01_fpr"]]
                         for r in rows])
    lines += ["## Privacy at matched accuracy", "",
              f"Comparing at equal sparsity mixes two effects: a pruned model that lost accuracy also fits its "
              f"members less. Here the pruned (or defended) model's {label} is interpolated linearly **along the "
              "sparsity axis** (mean over seeds) to the sparsity at which its mean test accuracy equals the "
              f"original model's minus {report.tolerance:g} (the most pruned model within {report.tolerance:g} of "
              "the original's accuracy), and compared with the original's. No extrapolation: a family whose "
              "accuracy never crosses that value is reported as not matched.", ""]
    for section, rows in _sections(report.matched).items():
        lines += [f"### {section}", ""]
        lines += _table(["pruner", "defense", "setting", "attack", "sparsities", "original test acc",
                         "matched test acc", f"original {label}", "matched sparsity", f"{label} at matched accuracy",
                         "Δ", "status"],
                        [[r["pruner"], r["defense"], r["setting"], r["attack"], r["sparsities"],
                          _fmt(r["original_test_accuracy"]), _fmt(r["matched_test_accuracy"]),
                          _fmt(r["original_metric"]),
                          _fmt(r["matched_sparsity"], 3), _fmt(r["matched_metric"]), _fmt(r["delta"], sign=True),
                          r["status"]] for r in rows])
    lines += ["## Tables (paper style)", "",
              "Per attack: test accuracy and attack metrics, mean ± std over seeds [95% interval]. Sparsity 0 is the "
              "original model; balanced accuracy has no resampled interval (it needs each attack's threshold).", ""]
    by_section_attack: Dict[Tuple[str, str], List[Mapping[str, Any]]] = defaultdict(list)
    for row in report.summary:
        by_section_attack[(row["section"], row["attack"])].append(row)
    for (section, attack), rows in by_section_attack.items():
        seen, table_rows = set(), []
        for r in rows:
            original = r["setting"] == "original"
            key = (r["pruner"], r["defense"], "original") if original else (r["pruner"], r["defense"], r["sparsity"],
                                                                           r["setting"])
            if key in seen:
                continue  # the original model's row is the same for every sparsity of its family
            seen.add(key)
            table_rows.append([r["pruner"], r["defense"], "0" if original else f"{r['sparsity']:g}",
                               r["setting"], r["seeds"],
                               _fmt(r["test_accuracy_mean"]) + (f" ± {_fmt(r['test_accuracy_std'])}"
                                                                if r["num_seeds"] > 1 else "")]
                              + [_cell(r, m) for m in TABLE_METRICS])
        lines += [f"### {section}, attack `{attack}`", ""]
        lines += _table(["pruner", "defense", "sparsity", "setting", "seeds", "test acc"]
                        + [METRIC_LABELS[m] for m in TABLE_METRICS], table_rows)
    if figures:
        lines += ["## Figures", ""]
        for name, path in figures.items():
            lines += [f"### {name}", "", f"![{name}]({path})", ""]
    lines += ["## Runs", "", "Every configuration and the result file of each seed.", ""]
    lines += _table(["configuration", "seed", "result"],
                    [[c.label, str(run.config.get("seed")), f"`{shown_path(run.path)}`"] for c in configurations
                     for run in c.runs])
    lines += ["TensorBoard (hparams over all runs): `tensorboard --logdir tensorboard` in this directory.", ""]
    return "\n".join(lines)


def shown_path(path: Optional[str]) -> str:
    """Relative to the working directory when below it, so a committed report names no machine's paths."""
    if not path:
        return "-"
    if fs.is_remote(path):
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns: List[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})


def per_seed_rows(report: StudyReport) -> List[Dict[str, Any]]:
    return [{**row, "result": shown_path(run.path)} for c in report.configurations for run in c.runs
            for row in run.rows()]


def write_tensorboard(report: StudyReport, directory: Path) -> None:
    """One hparams session per run: configuration -> accuracies, real sparsity and every attack's metrics."""
    from tensorboard.plugins.hparams import api as hparams_api

    from tfprune_mia.backend import tf

    runs = [run for c in report.configurations for run in c.runs]
    metrics = ["test_accuracy/original", "test_accuracy/pruned", "real_sparsity"]
    metrics += sorted({f"{attack}/{m}/{setting}" for run in runs for setting, audit in run.settings.items()
                       for attack in audit.ran for m in ("auc", "tpr_at_0.01_fpr", "advantage")})
    names = ["dataset", "model", "pruner", "defense", "sparsity", "seed"]
    with tf.summary.create_file_writer(str(directory)).as_default():
        hparams_api.hparams_config(hparams=[hparams_api.HParam(name) for name in names],
                                   metrics=[hparams_api.Metric(name) for name in metrics])
    for number, run in enumerate(runs):
        config = run.config
        values = {"dataset": section_of(config), "model": config.get("model", ""),
                  "pruner": config["prune"]["pruner"], "defense": defense_label(config),
                  "sparsity": float(config["prune"]["sparsity"]), "seed": int(config.get("seed", 0))}
        with tf.summary.create_file_writer(str(directory / f"run-{number:04d}")).as_default():
            hparams_api.hparams(values, trial_id=Path(run.path).stem if run.path else str(number))
            tf.summary.scalar("test_accuracy/original", run.original.model.test_accuracy, step=1)
            if run.pruned is not None:
                tf.summary.scalar("test_accuracy/pruned", run.pruned.model.test_accuracy, step=1)
                tf.summary.scalar("real_sparsity", run.pruned.model.prunable_sparsity or 0.0, step=1)
            for setting, audit in run.settings.items():
                for attack, result in audit.ran.items():
                    for m in ("auc", "tpr_at_0.01_fpr", "advantage"):
                        tf.summary.scalar(f"{attack}/{m}/{setting}", result[m], step=1)


def write_report(report: StudyReport, directory: os.PathLike, sources: Sequence[str] = (),
                 figures: bool = True) -> Dict[str, str]:
    """report.md, summary.csv, deltas.csv, matched_accuracy.csv, per_seed.csv, report.json, figures/*.png and
    tensorboard/ in `directory`; returns name -> path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    drawn: Dict[str, str] = {}
    if figures:
        from tfprune_mia.audit.study_figures import draw_figures

        drawn = {name: os.path.relpath(path, directory)
                 for name, path in draw_figures(report, directory / "figures").items()}
    paths = {"markdown": directory / "report.md", "summary": directory / "summary.csv",
             "deltas": directory / "deltas.csv", "matched": directory / "matched_accuracy.csv",
             "per_seed": directory / "per_seed.csv", "json": directory / "report.json"}
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown(report, drawn, sources))
    _write_csv(paths["summary"], report.summary)
    _write_csv(paths["deltas"], report.deltas)
    _write_csv(paths["matched"], report.matched)
    _write_csv(paths["per_seed"], per_seed_rows(report))
    write_json(paths["json"], {"metric": report.metric, "num_resamples": report.num_resamples,
                               "match_tolerance": report.tolerance,
                               "summary": list(report.summary), "deltas": list(report.deltas),
                               "matched_accuracy": list(report.matched), "violations": list(report.violations),
                               "gate": dataclasses.asdict(report.gate), "figures": drawn,
                               "runs": [{"configuration": c.label, "seed": run.config.get("seed"),
                                         "result": shown_path(run.path)} for c in report.configurations
                                        for run in c.runs]})
    write_tensorboard(report, directory / "tensorboard")
    return {**{k: str(v) for k, v in paths.items()}, "tensorboard": str(directory / "tensorboard"),
            **{f"figure:{k}": str(directory / v) for k, v in drawn.items()}}
