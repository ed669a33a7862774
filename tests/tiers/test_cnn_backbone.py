"""Exits for a torch CNN (``python -m training.backbone --cnn``): a folder of real images per class, packaged,
served by three real tiers that answer as torch does at the same exit; bad input is one line.

The backbone is the bundled Fashion-MNIST CNN's six blocks without their exits,
returned by a function in a file this test writes; the images are real
Fashion-MNIST test images written as PNGs, 30 per class.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow  # real tier processes

from lab import fashion_mnist  # noqa: E402
from splitexit.client import Client  # noqa: E402
from splitexit.samples import encode_png  # noqa: E402
from splitexit.shared.integrity import verify_package  # noqa: E402
from splitexit.shared.manifest import ImageInput, Manifest  # noqa: E402
from splitexit.shared.preprocess import decode_image  # noqa: E402
from splitexit.shared.runtime import exit_probabilities  # noqa: E402
from splitexit.shared.tiers import Tier  # noqa: E402
from splitexit.testbed import Testbed, free_port  # noqa: E402
from tests.conftest import IMAGE_MODEL_DIR  # noqa: E402
from tests.deploy_files import ROOT  # noqa: E402
from training.backbone import arguments, main  # noqa: E402
from training.calibration import CALIBRATION_KEY, EVALUATION_FILE  # noqa: E402
from training.cnn import load_reference  # noqa: E402
from training.cnn_backbone import load_heads  # noqa: E402

PER_CLASS = 30
NAME = "fmnist-gap"
SPEC = ImageInput(channels=1, height=28, width=28, mean=0.286, std=0.353)
PREPROCESSING = ["--channels", "1", "--size", "28", "--mean", "0.286", "--std", "0.353"]
BACKBONE = f"""
from pathlib import Path

from torch import nn

from training.cnn import load_reference


def blocks():
    cnn = load_reference(Path({str(IMAGE_MODEL_DIR.resolve())!r}))
    return nn.Sequential(*(segment.body for segment in cnn.segments))


def mismatched():
    return [nn.Conv2d(1, 4, 3, 2, 1), nn.Conv2d(8, 8, 3)]


def not_blocks():
    return "a CNN"
"""


def class_folder(name: str) -> str:
    return name.lower().replace("/", "-").replace(" ", "-")


def write_images(folder: Path, per_class: int, classes: range = range(10)) -> Path:
    """The first ``per_class`` test images of each class as ``folder/<class>/<index>.png``."""
    pixels, labels = fashion_mnist.load("test")
    for label in classes:
        (folder / class_folder(fashion_mnist.LABELS[label])).mkdir(parents=True)
        for index in np.flatnonzero(labels == label)[:per_class]:
            (folder / class_folder(fashion_mnist.LABELS[label]) / f"{index}.png").write_bytes(encode_png(pixels[index]))
    return folder


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("backbone") / "my_cnn.py"
    path.write_text(BACKBONE)
    return path


def package(backbone: Path, function: str, images: Path, out: Path, *extra: str) -> int:
    argv = ["--cnn", f"{backbone}:{function}", "--images", str(images), *PREPROCESSING, "--out", str(out)]
    return main([*argv, "--threads", "2", *extra])


@pytest.fixture(scope="module")
def packaged(backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    tmp = tmp_path_factory.mktemp("cnn")
    images = write_images(tmp / "images", PER_CLASS)
    started = time.perf_counter()
    assert package(backbone, "blocks", images, tmp / "models" / NAME) == 0
    print(f"packaging {10 * PER_CLASS} images on the bundled CNN's blocks took {time.perf_counter() - started:.1f} s")
    return tmp, verify_package(tmp / "models" / NAME)


@pytest.fixture(scope="module")
def bed(packaged: tuple[Path, Manifest]) -> Iterator[Testbed]:
    tmp, _ = packaged
    settings = {"models_dir": str(tmp / "models")}
    ports = {tier: free_port() for tier in Tier}
    with Testbed(ports=ports, settings={tier: settings for tier in Tier}, log_dir=tmp / "logs") as running:
        yield running


def test_the_package_has_an_exit_per_block_calibrated_on_its_own_split(packaged: tuple[Path, Manifest]) -> None:
    tmp, manifest = packaged
    assert manifest.labels == sorted(class_folder(label) for label in fashion_mnist.LABELS)
    assert manifest.num_blocks == 6 and manifest.input == SPEC
    assert all(block.temperature is not None and block.macs > 0 for block in manifest.blocks)
    assert (tmp / "models" / NAME / "heads.safetensors").is_file()
    assert (tmp / "models" / NAME).stat().st_mode & 0o777 == 0o755 and not list((tmp / "models").glob(".*"))
    report = (tmp / "models" / NAME / EVALUATION_FILE).read_text()
    assert f'"{CALIBRATION_KEY}"' in report and '"calibration_samples": 45' in report and '"test_samples": 45' in report
    # pooled exits on a trained CNN: the deepest beats chance by far (10 classes)
    assert len(manifest.exit_accuracy) == 6 and manifest.exit_accuracy[-1] > 0.8, manifest.exit_accuracy


def torch_exits(manifest: Manifest, package_dir: Path, pngs: list[bytes]) -> np.ndarray:
    """``[exit, sample, class]`` logits of the bundled CNN's blocks and the package's trained heads, in torch."""
    blocks = [segment.body for segment in load_reference(IMAGE_MODEL_DIR).segments]
    heads = load_heads(package_dir, [b.activation.shape[1] for b in manifest.blocks], len(manifest.labels))
    x = torch.from_numpy(np.concatenate([decode_image(png, SPEC) for png in pngs]))
    exits = []
    with torch.no_grad():
        for block, head in zip(blocks, heads, strict=True):
            x = block(x)
            exits.append(head(x).numpy())
    return np.stack(exits)


def test_every_tier_answers_as_torch_does_at_the_same_exit(packaged: tuple[Path, Manifest], bed: Testbed) -> None:
    tmp, manifest = packaged
    images = fashion_mnist.test_images(40, seed=7)
    logits = torch_exits(manifest, tmp / "models" / NAME, [image.png for image in images])
    confidence = np.stack([exit_probabilities(z, b).max(1) for z, b in zip(logits, manifest.blocks, strict=True)])
    seen = set()
    with Client(bed.device_address, timeout_s=10) as client:
        for i, image in enumerate(images):
            thresholds = {Tier.DEVICE: 0.0, Tier.CLOUD: 1.0}
            device_best = confidence[:2, i].max()
            if confidence[2, i] > device_best:  # between: no exit on the device passes, the edge's first does
                thresholds[Tier.EDGE] = float(device_best + confidence[2, i]) / 2
            for tier, threshold in thresholds.items():
                answer = client.infer(image.png, model=NAME, threshold=threshold)
                assert answer.exit_tier is tier and not answer.degraded
                assert answer.exit_block == {Tier.DEVICE: 1, Tier.EDGE: 3, Tier.CLOUD: 6}[tier]
                np.testing.assert_allclose(answer.logits, logits[answer.exit_block - 1, i], atol=1e-4, rtol=0)
                seen.add(tier)
    assert seen == set(Tier)


REFUSALS = {  # what is wrong: (the function, the classes written, a stray file or None, the error after "error: ")
    "a-folder-with-one-class": (
        "blocks",
        range(1),
        None,
        r"images has 1 class folder\(s\) \(t-shirt-top\); a classifier needs at least two, one subfolder of images "
        r"per class$",
    ),
    "a-file-that-is-no-image": (
        "blocks",
        range(2),
        "notes.txt",
        r"images/trouser/notes\.txt is not an image: the 18 bytes sent are not an image in a format Pillow reads",
    ),
    "a-block-that-does-not-feed-the-next": (
        "mismatched",
        range(2),
        None,
        r"^out: block 2 does not take block 1's output \[2, 4, 14, 14\]: .*expected input\[2, 4, 14, 14\] to have "
        r"8 channels",
    ),
    "not-a-sequence-of-blocks": (
        "not_blocks",
        range(2),
        None,
        r"my_cnn\.py:not_blocks returned str; return the CNN's blocks in order: an nn.Sequential, or a list of "
        r"nn.Module$",
    ),
    "no-such-function": ("missing", range(2), None, r"my_cnn\.py has no function 'missing'$"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_input_is_one_line_saying_what_is_wrong(
    case: str, backbone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    function, classes, stray, message = REFUSALS[case]
    images = write_images(tmp_path / "images", 10, classes)
    if stray:
        (images / class_folder(fashion_mnist.LABELS[classes[-1]]) / stray).write_text("taken on a Tuesday")
    code = package(backbone, function, images, tmp_path / "out")
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert re.search(message, err.removeprefix("error: ")), err
    assert not (tmp_path / "out").exists()


def test_the_docs_command_is_the_one_tested() -> None:
    """docs/models.md's command parses, and with this test's preprocessing."""
    page = (ROOT / "docs" / "models.md").read_text()
    section = page[page.index("## Exits on a torch CNN") :]
    (command,) = re.findall(r"```sh\n(.*?)```", section, re.S)[:1]
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:3] == ["python", "-m", "training.backbone"]
    args = arguments().parse_args(argv[3:])
    assert (args.channels, args.size, args.mean, args.std) == (SPEC.channels, (28, 28), SPEC.mean, SPEC.std)
    assert [argv[argv.index(flag) + 1] for flag in PREPROCESSING[::2]] == PREPROCESSING[1::2]
