"""``splitexit infer`` and ``splitexit models`` as a user runs them: a real process against the real testbed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from splitexit.infer_cli import slug
from splitexit.samples import LabelledImage
from splitexit.shared.manifest import Manifest
from splitexit.testbed import Testbed, free_port


def splitexit(*args: str | bytes, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splitexit", *args], capture_output=True, text=True, timeout=timeout, errors="replace"
    )


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory: pytest.TempPathFactory, images: list[LabelledImage], manifest: Manifest) -> Path:
    """40 real test images in folders named after their labels (``t-shirt-top/``, ``shirt/``, ...)."""
    root = tmp_path_factory.mktemp("labelled")
    for image in images[:40]:
        folder = root / slug(manifest.labels[image.label])
        folder.mkdir(exist_ok=True)
        (folder / f"{image.index}.png").write_bytes(image.png)
    return root


def test_a_folder_as_json_lines_with_top_k_and_accuracy_from_folder_names(
    testbed: Testbed, labelled_folder: Path, images: list[LabelledImage], manifest: Manifest
) -> None:
    run = splitexit(
        "infer",
        str(labelled_folder),
        "--json",
        "--top-k",
        "3",
        "--concurrency",
        "4",
        "--address",
        testbed.device_address,
    )
    assert run.returncode == 0, run.stderr
    answers = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(answers) == 40 and "Traceback" not in run.stderr
    truth = {str(image.index): manifest.labels[image.label] for image in images[:40]}
    for answer in answers:
        assert answer["true_label"] == truth[Path(answer["input"]).stem]
        assert answer["exit_tier"] in {"DEVICE", "EDGE", "CLOUD"} and len(answer["top_k"]) == 3
    correct = sum(a["label_name"] == a["true_label"] for a in answers)
    assert f"accuracy {correct / 40:.1%} ({correct} of 40 labelled by folder name)" in run.stderr
    assert "40 of 40 answered" in run.stderr and "exited on device" in run.stderr


def test_globs_and_text_lines(testbed: Testbed, labelled_folder: Path) -> None:
    run = splitexit(
        "infer", f"{labelled_folder}/**/*.png", "--address", testbed.device_address, "--threshold", "1", "--progress"
    )
    assert run.returncode == 0, run.stderr
    assert f"[{'#' * 30}] 40/40" in run.stderr  # the bar, full at the end (text mode turns its \r into \n)
    assert len(run.stdout.splitlines()) == 40 and all("exit cloud block 6" in line for line in run.stdout.splitlines())
    text = splitexit(
        "infer",
        "--model",
        "minilm-sentiment",
        "--text",
        "A wonderful, moving film.",
        "--address",
        testbed.device_address,
    )
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("'A wonderful, moving film.': positive")


def test_bad_inputs_are_one_line_each_with_exit_codes_scripts_can_use(
    testbed: Testbed, labelled_folder: Path, tmp_path: Path
) -> None:
    address = ("--address", testbed.device_address)
    missing = splitexit("infer", str(tmp_path / "nope.png"), *address)
    assert missing.returncode == 2 and missing.stderr.strip().endswith("nope.png: no such file or folder")
    empty = splitexit("infer", *address)
    assert empty.returncode == 2 and "give image files" in empty.stderr
    bad_utf8 = subprocess.run(
        [sys.executable, "-m", "splitexit", "infer", "--model", "minilm-sentiment", "--text", b"caf\xe9", *address],
        capture_output=True,
        text=True,
    )
    assert bad_utf8.returncode == 2 and "--text #1 is not valid UTF-8 (byte 0xe9 at offset 3)" in bad_utf8.stderr
    unknown_model = splitexit("infer", str(labelled_folder), "--model", "nope", *address)
    assert unknown_model.returncode == 2 and "NOT_FOUND" in unknown_model.stderr
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    some_failed = splitexit("infer", str(tmp_path / "broken.png"), str(next(labelled_folder.rglob("*.png"))), *address)
    assert some_failed.returncode == 1 and len(some_failed.stdout.splitlines()) == 1
    assert "broken.png: INVALID_ARGUMENT: the 16 bytes sent are not an image" in some_failed.stderr
    unreachable = splitexit("infer", str(labelled_folder), "--address", f"127.0.0.1:{free_port()}", "--timeout", "2")
    assert unreachable.returncode == 3 and "UNAVAILABLE" in unreachable.stderr
    for run in (missing, empty, bad_utf8, unknown_model, some_failed, unreachable):
        assert "Traceback" not in run.stderr, run.stderr


def test_models_lists_the_contract(testbed: Testbed) -> None:
    run = splitexit("models", "--address", testbed.device_address)
    assert run.returncode == 0, run.stderr
    assert "fmnist-cnn (default): image-classification, 6 blocks, 10 labels; image:" in run.stdout
    assert "mean 0.286" in run.stdout and "std 0.353" in run.stdout
    as_json = [
        json.loads(line)
        for line in splitexit("models", "--json", "--address", testbed.device_address).stdout.splitlines()
    ]
    assert {m["name"] for m in as_json} == {"fmnist-cnn", "minilm-sentiment", "minilm-bbc-topic"}
    assert next(m for m in as_json if m["name"] == "fmnist-cnn")["tensor"]["shape"] == [1, 1, 28, 28]


def test_batch_sends_a_folder_in_infer_batch_messages_with_the_stream_answers(
    testbed: Testbed, labelled_folder: Path, tmp_path: Path
) -> None:
    address = ("--address", testbed.device_address, "--threshold", "0.9", "--json")
    streamed = splitexit("infer", str(labelled_folder), *address)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    batched = splitexit("infer", str(labelled_folder), str(broken), "--batch", "16", "--concurrency", "32", *address)
    assert (streamed.returncode, batched.returncode) == (0, 1), batched.stderr
    by_input = {answer["input"]: answer for answer in map(json.loads, streamed.stdout.splitlines())}
    answers = [json.loads(line) for line in batched.stdout.splitlines()]
    assert len(answers) == 40 and "Traceback" not in batched.stderr
    for answer in answers:
        unary = by_input[answer["input"]]
        assert (answer["label_name"], answer["exit_tier"], answer["exit_block"]) == (
            unary["label_name"],
            unary["exit_tier"],
            unary["exit_block"],
        )
    assert f"{broken}: INVALID_ARGUMENT:" in batched.stderr and "40 of 41 answered" in batched.stderr
    assert "accuracy" in batched.stderr and "failed: INVALID_ARGUMENT 1" in batched.stderr
    assert "device latency mean" in batched.stderr and all(
        answer["hops"][0]["timings"]["total_s"] > 0 for answer in answers
    )
    texts = splitexit(
        "infer",
        "--model",
        "minilm-sentiment",
        "--text",
        "A wonderful film.",
        "--text",
        "Dull.",
        "--batch",
        "2",
        "--address",
        testbed.device_address,
    )
    assert texts.returncode == 0 and texts.stdout.startswith("'A wonderful film.': positive"), texts.stderr
