"""Calibrate every shipped package's exits and write ``docs/results/calibration.md``.

    python -m training.calibrate                  # make calibration: models/ (and models-large/ where built)
    python -m training.calibrate --page-only      # only rewrite the page from the packages' evaluation.json
    python -m training.calibrate --only models/minilm-sentiment   # refit one package (the page shows all)

Each package is calibrated on its calibration split and its ECE measured on its
test split (:mod:`training.splits`); the temperatures go into ``manifest.json``,
the ECE into ``evaluation.json`` and the package's ``integrity.json`` is
rewritten. The target, ECE after at most half of ECE before at every exit, is
printed as met or missed for each exit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lab.results_pages import write_page
from splitexit.shared.manifest import MANIFEST_FILE, ImageInput, TextInput, load_manifest
from splitexit.shared.tokenizer import TextTokenizer
from training.calibration import CALIBRATION_KEY, EVALUATION_FILE, Split, calibrate_package
from training.splits import bbc_splits, fmnist_splits, sentiment_splits, text_split
from training.text_slices import missing_or_stale

PACKAGE_DIRS = (Path("models"), Path("models-large"))
TARGET_RATIO = 0.5
COMMAND = "make calibration"


def splits_for(package_dir: Path) -> tuple[Split, Split]:
    """The (calibration, test) splits of a shipped package, by its input and task."""
    manifest = load_manifest(package_dir)
    if isinstance(manifest.input, ImageInput):
        return fmnist_splits(manifest.input)
    assert isinstance(manifest.input, TextInput)
    text = sentiment_splits() if package_dir.name.endswith("-sentiment") else bbc_splits()
    tokenizer = TextTokenizer.from_package(package_dir, manifest.input)
    return (
        text_split(text.calibration, tokenizer, text.calibration_name),
        text_split(text.test, tokenizer, text.test_name),
    )


def verdict(before: float, after: float) -> str:
    return "met" if after <= TARGET_RATIO * before else "missed"


def package_table(name: str, report: dict) -> str:
    """One package's section: the splits, then a row per exit."""
    rows = [
        f"## `{name}`",
        "",
        f"Temperatures fitted on {report['calibration_split']} ({report['calibration_samples']:,} samples); "
        f"ECE on {report['test_split']} ({report['test_samples']:,} samples).",
        "",
        "| exit | temperature | ECE before | ECE after | after ÷ before | target ≤ 0.5 | noise floor |",
        "| ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    columns = zip(report["temperature"], report["ece_before"], report["ece_after"], report["ece_noise_floor"])
    for k, (t, before, after, floor) in enumerate(columns, 1):
        ratio = after / before if before else float("inf")
        rows.append(
            f"| {k} | {t:.3f} | {before:.4f} | {after:.4f} | {ratio:.2f} | {verdict(before, after)} | {floor:.4f} |"
        )
    return "\n".join(rows)


def write_calibration_page(packages: list[Path]) -> Path:
    sections = []
    for package in packages:
        report = stored_report(package)
        sections.append(package_table(package.name, report) if report else f"## `{package.name}`\n\nNot calibrated.")
    intro = (
        "Every exit's softmax temperature T_k is fitted (least negative log-likelihood) on a calibration split, "
        "and the tiers compute C_k = max softmax(logits / T_k), so one threshold α means the same at every exit. "
        "ECE = the sample-weighted mean |accuracy − confidence| over 15 equal-width confidence bins, measured on "
        "a test split disjoint from the calibration one. The noise floor is the ECE a perfectly calibrated exit "
        "with the same confidences would still show on that many test samples (mean of 200 draws): where the "
        "uncalibrated ECE is already near it, no temperature can halve it."
    )
    return write_page("calibration", "Calibrated exit confidences", COMMAND, "\n\n".join([intro, *sections]))


def stored_report(package: Path) -> dict | None:
    """The calibration report in the package's evaluation.json, if it has one."""
    path = package / EVALUATION_FILE
    return json.loads(path.read_text()).get(CALIBRATION_KEY) if path.is_file() else None


def shipped_packages(roots: tuple[Path, ...] = PACKAGE_DIRS) -> list[Path]:
    return [path.parent for root in roots for path in sorted(root.glob(f"*/{MANIFEST_FILE}"))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--page-only", action="store_true", help="rewrite the page from evaluation.json only")
    parser.add_argument("--only", type=Path, nargs="*", help="calibrate only these package folders")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)  # training.export.open_session sizes onnxruntime by it
    packages = shipped_packages()
    for package in args.only or packages:
        if missing_or_stale(package, load_manifest(package)):
            print(f"{package.name}: slices not built (`make models-large`), its stored calibration is reported")
        elif not args.page_only:
            calibrate_package(package, *splits_for(package))
        report = stored_report(package)
        if report is None:
            print(f"{package.name}: not calibrated")
            continue
        marks = [verdict(b, a) for b, a in zip(report["ece_before"], report["ece_after"], strict=True)]
        missed = [str(k) for k, mark in enumerate(marks, 1) if mark == "missed"]
        state = f"target missed at exit(s) {', '.join(missed)}" if missed else "target met at every exit"
        print(
            f"{package.name}: T {report['temperature']}, ECE {report['ece_before']} -> {report['ece_after']}; {state}"
        )
    print(f"wrote {write_calibration_page(packages)}")


if __name__ == "__main__":
    main()
