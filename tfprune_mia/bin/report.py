"""Write one report over any set of runs: paper-style tables over seeds, leakage(pruned) - leakage(original)
with paired intervals and verdicts, privacy at matched accuracy, plots, TensorBoard hparams, and a release gate.

  report --runs=runs/studies/study-0123456789 --report_dir=report
  report --runs='runs/*/results/*.json' --report_dir=report --gate_tpr_at_1pct=0.02 --gate_pruned_not_worse=0

Exit status 1 when the gate fails (each violation names its configuration and attack), 2 on bad input.
"""
from __future__ import annotations

import sys

from absl import flags

from tfprune_mia.bin.runner import run_main

flags.DEFINE_list("runs", None, "Result files, glob patterns, run directories, run roots or study "
                "directories, local or on any TensorFlow file system (e.g. gs://bucket/runs).")
flags.DEFINE_string("report_dir", "report", "Directory the report is written to.")
flags.DEFINE_enum("report_metric", "auc", ["auc", "advantage", "tpr_at_0.01_fpr", "tpr_at_0.001_fpr"],
                  "Attack metric of the verdicts, the matched-accuracy comparison and the plots.")
flags.DEFINE_integer("report_resamples", 200, "Bootstrap resamples of every interval (seeds, then samples).")
flags.DEFINE_float("match_tolerance", 0.01, "Matched accuracy: compare the original with the most pruned model "
                   "whose test accuracy is at most this much lower (0: exactly equal).")
flags.DEFINE_boolean("report_figures", True, "Draw the figures (PNG).")
flags.DEFINE_float("gate_tpr_at_1pct", None, "Fail when the upper 95% bound of any attack's TPR at 1% FPR on a "
                   "pruned model exceeds this.")
flags.DEFINE_float("gate_auc", None, "Fail when the upper 95% bound of any attack's AUC on a pruned model "
                   "exceeds this.")
flags.DEFINE_float("gate_advantage", None, "Fail when the upper 95% bound of any attack's advantage (max TPR - "
                   "FPR) on a pruned model exceeds this.")
flags.DEFINE_float("gate_pruned_not_worse", None, "Fail when the upper 95% bound of pruned - original (paired, "
                   "metric of --report_metric) exceeds this tolerated increase, e.g. 0.")

FLAGS = flags.FLAGS


def main() -> int:
    from tfprune_mia.audit.gate import GateConfig
    from tfprune_mia.audit.report_writer import write_report
    from tfprune_mia.audit.study_report import build_report, load_results
    from tfprune_mia.errors import ConfigError

    if not FLAGS.runs:
        raise ConfigError("no results given; pass --runs=<run, study or result paths> (comma-separated)")
    gate = GateConfig(FLAGS.gate_tpr_at_1pct, FLAGS.gate_auc, FLAGS.gate_advantage, FLAGS.gate_pruned_not_worse)
    report = build_report(load_results(FLAGS.runs), FLAGS.report_metric, FLAGS.report_resamples, gate,
                          FLAGS.match_tolerance)
    paths = write_report(report, FLAGS.report_dir, FLAGS.runs, figures=FLAGS.report_figures)
    print(f"report: {paths['markdown']} ({len(report.configurations)} configurations, "
          f"{sum(len(c.runs) for c in report.configurations)} runs)")
    for row in report.deltas:
        metric = FLAGS.report_metric
        print(f"  {row['section']}: {row['pruner']}@{row['sparsity']:g} {row['defense']} {row['setting']} "
              f"{row['attack']}: {metric} pruned - original {row[f'delta_{metric}']:+.4f} "
              f"[{row[f'delta_{metric}_low']:+.4f}, {row[f'delta_{metric}_high']:+.4f}] -> {row[f'verdict_{metric}']}")
    if gate.active:
        if report.passed:
            print("release gate: PASSED")
            return 0
        for violation in report.violations:
            print(f"gate violation: {violation}", file=sys.stderr)
        print(f"release gate: FAILED ({len(report.violations)} violations)", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
