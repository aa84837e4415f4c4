"""How real the synthetic tumors are: profile × statistic, real vs synthetic (issue 16, item 8).

Scores each profile against the real lesions of LiTS case 117 with
:func:`syntumor_core.realism.score.score_realism` (``--n`` synthesis calls per type, tiny /
small / medium / large, into the liver minus its real lesions; lesions of at least the
15th-largest real lesion's size on both sides) and prints Markdown tables: per statistic the
real and synthetic median (IQR), the two-sample KS p-value and the counts; the machine
reader's cross-validated AUC with its bootstrap 95 % interval; per tumor type the synthetic
contrast and lesion HU; and issue 16's calibration targets for each profile. Run:

    .venv/bin/python benchmarks/realism.py [--n 8] [--seed 0] [--profiles paper realistic]
        [--out benchmarks/out/realism]

``--out`` also writes ``realism.json`` and the plots (data derived from LiTS: the default
folder is ignored by git; never commit it).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET_CONTRAST_HU = (35.0, 50.0)
TARGET_KS_P = 0.05
TARGET_HU_MARGIN = 10.0


def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "syntumor_core"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = sorted({line[3:].strip() for line in dirty.splitlines() if line.strip()})
    return head + (f" (uncommitted: {', '.join(changed)})" if changed else "")


def _statistics_table(reports) -> list[str]:
    from syntumor_core.realism.report import table_rows

    lines = [
        "| profile | statistic | real median (IQR) | synthetic median (IQR) | KS p | n real/synth |",
        "|---|---|---|---|---:|---:|",
    ]
    for report in reports:
        record = report.to_dict()
        for row in table_rows(record):
            lines.append(f"| {record['profile']} | {row['statistic']} | {row['real']} | "
                         f"{row['synthetic']} | {row['ks_p']} | {row['n']} |")  # fmt: skip
        reader = report.reader
        text = reader.describe().replace("machine reader ", "") if reader else "not run"
        lines.append(f"| {record['profile']} | **machine reader** | | {text} | | "
                     f"{reader.n_real}/{reader.n_synthetic} |" if reader else "| | | | | | |")  # fmt: skip
    return lines


def _per_type_table(reports) -> list[str]:
    lines = [
        "| profile | type | lesions ≥ threshold | contrast median (IQR) HU | lesion HU median |",
        "|---|---|---:|---|---:|",
    ]
    for report in reports:
        for tumor_type in report.tumor_types:
            chosen = [s for s, t in zip(report.synthetic, report.synthetic_types, strict=True)
                      if t == tumor_type]  # fmt: skip
            if not chosen:
                lines.append(f"| {report.profile} | {tumor_type} | 0 | — | — |")
                continue
            contrast = np.array([s.contrast_hu for s in chosen])
            q1, median, q3 = np.nanpercentile(contrast, [25, 50, 75])
            hu = np.median([s.mean_hu for s in chosen])
            lines.append(f"| {report.profile} | {tumor_type} | {len(chosen)} | "
                         f"{median:.1f} ({q1:.1f}–{q3:.1f}) | {hu:.1f} |")  # fmt: skip
    return lines


def _targets(reports) -> list[str]:
    lines = []
    for report in reports:
        contrast, hu = report.comparison("contrast_hu"), report.comparison("mean_hu")
        checks = {
            f"contrast median {contrast.synthetic_median:.1f} in 35–50 HU": TARGET_CONTRAST_HU[0]
            <= contrast.synthetic_median
            <= TARGET_CONTRAST_HU[1],
            f"contrast KS p {contrast.ks_p:.2g} > 0.05": contrast.ks_p > TARGET_KS_P,
            f"lesion HU median {hu.synthetic_median:.1f} in real IQR ± 10 "
            f"({hu.real_q1 - TARGET_HU_MARGIN:.1f}–{hu.real_q3 + TARGET_HU_MARGIN:.1f})": (
                hu.real_q1 - TARGET_HU_MARGIN
                <= hu.synthetic_median
                <= hu.real_q3 + TARGET_HU_MARGIN
            ),
        }
        text = "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks.items())
        lines.append(f"- `{report.profile}`: {text}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8, help="synthesis calls per tumor type")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profiles", nargs="+", default=["paper", "realistic"])
    parser.add_argument("--out", type=Path, help="also write realism.json and plots here")
    args = parser.parse_args()

    from syntumor_core.realism.report import save_report_folder
    from syntumor_core.realism.score import (
        default_min_voxels,
        engine_accepts_protect,
        lits117_case,
        real_arm,
        score_realism,
    )

    started = time.perf_counter()
    case = lits117_case()
    threshold = default_min_voxels(case)
    real = real_arm(case, min_voxels=threshold)
    reports, seconds = [], {}
    for profile in args.profiles:
        begun = time.perf_counter()
        reports.append(score_realism(case, profile=profile, n_per_type=args.n, seed=args.seed,
                                     min_voxels=threshold, real=real))  # fmt: skip
        seconds[profile] = time.perf_counter() - begun
    print(f"LiTS case 117 ({case.spacing[0]} mm assumed), {len(real.stats)} real lesions ≥ "
          f"{threshold} voxels; {args.n} call(s) per type (tiny, small, medium, large), seed "
          f"{args.seed}; protect mask passed: {engine_accepts_protect()}; code {_commit()}; "
          f"{platform.machine()}, Python {platform.python_version()}")  # fmt: skip
    print()
    print("\n".join(_statistics_table(reports)))
    print()
    print("\n".join(_per_type_table(reports)))
    print()
    print("Issue 16 calibration targets:")
    print("\n".join(_targets(reports)))
    print()
    timing = ", ".join(f"{profile} {s:.1f} s" for profile, s in seconds.items())
    print(f"Wall time: {timing}; total {time.perf_counter() - started:.1f} s.")
    if args.out is not None:
        print(f"wrote {save_report_folder(reports, args.out)}")


if __name__ == "__main__":
    main()
