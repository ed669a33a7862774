"""The public packager (``splitexit.packaging``, ``splitexit package``): what it writes, and every refusal.

Small networks on real Fashion-MNIST test images and the shipped MiniLM tokenizer;
each bad description must fail with one clear line naming the block or exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import Tensor, nn  # noqa: E402

from lab import fashion_mnist  # noqa: E402
from splitexit.packaging import (  # noqa: E402
    CheckData,
    EarlyExitNetwork,
    ImageInput,
    PackagingError,
    ParityError,
    TextPreprocessing,
    write_package,
)
from splitexit.policies.chain import Chain  # noqa: E402
from splitexit.shared.integrity import verify_package  # noqa: E402
from splitexit.shared.preprocess import normalize_images  # noqa: E402
from splitexit.shared.runtime import HostedModel  # noqa: E402
from splitexit.shared.settings import DEFAULT_MODELS_DIR  # noqa: E402
from splitexit.shared.tiers import Tier  # noqa: E402

SPEC = ImageInput(channels=1, height=28, width=28, mean=0.286, std=0.353)
LABELS = list(fashion_mnist.LABELS)
TOKENIZER = DEFAULT_MODELS_DIR / "minilm-sentiment" / "tokenizer.json"


@pytest.fixture(scope="module")
def images() -> tuple[Tensor, Tensor]:
    pixels, labels = fashion_mnist.load("test")
    return torch.from_numpy(normalize_images(pixels[:300], SPEC)), torch.from_numpy(labels[:300].astype(np.int64))


def conv(a: int, b: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(a, b, 3, 2, 1), nn.ReLU())


def head(channels: int, size: int, classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, classes))


def network(
    images: tuple[Tensor, Tensor], blocks: list[nn.Module], exits: list[nn.Module], **changes
) -> EarlyExitNetwork:
    torch.manual_seed(0)
    x, y = images
    fields = dict(name="tiny", blocks=blocks, exits=exits, example=x[:1], labels=LABELS, preprocessing=SPEC)
    return EarlyExitNetwork(**{**fields, "data": CheckData(x, y), **changes})


def test_a_package_the_tiers_load_with_costs_and_exit_accuracy(images: tuple[Tensor, Tensor], tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = network(images, [conv(1, 4), conv(4, 8), conv(8, 8)], [head(4, 14), head(8, 7), head(8, 4)])
    manifest = write_package(net, tmp_path / "tiny")
    assert verify_package(tmp_path / "tiny") == manifest
    assert (tmp_path / "tiny").stat().st_mode & 0o777 == 0o755  # readable by a tier running as another user
    assert [b.input.shape for b in manifest.blocks] == [[None, 1, 28, 28], [None, 4, 14, 14], [None, 8, 7, 7]]
    assert {tier: (r.first, r.last) for tier, r in manifest.default_ranges.items()} == {
        Tier.DEVICE: (1, 1),
        Tier.EDGE: (1, 2),
        Tier.CLOUD: (1, 3),
    }
    report = json.loads((tmp_path / "tiny" / "packaging.json").read_text())
    assert [b["activation_bytes"] for b in report["blocks"]] == [4 * 4 * 14 * 14, 4 * 8 * 7 * 7, 4 * 8 * 4 * 4]
    conv1 = 4 * 14 * 14 * 9 + 4 * 14 * 14 * 10  # the 3x3 conv, then the exit's linear layer
    assert report["blocks"][0]["macs"] == manifest.blocks[0].macs == conv1
    assert report["samples_checked"] == 301 and report["parity_max_diff"] <= 1e-4
    x, y = images
    hosted = HostedModel(tmp_path / "tiny", manifest, Chain.of(manifest), tier=Tier.CLOUD, onnx_threads=1)
    runs = hosted.run(1, x.numpy(), [[1.0] * 3] * len(x), [3] * len(x))  # every sample to the final exit
    with torch.no_grad():
        final = net.exits[2](net.blocks[2](net.blocks[1](net.blocks[0](x))))
    np.testing.assert_allclose(np.stack([r.logits for r in runs]), final.numpy(), atol=1e-4)
    assert manifest.exit_accuracy[2] == round(float((final.argmax(1) == y).float().mean()), 4)


def test_a_text_package_keeps_the_token_axis_dynamic(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    from splitexit.shared.tokenizer import TextTokenizer

    torch.manual_seed(0)
    spec = TextPreprocessing(tokenizer=TOKENIZER, max_tokens=32)
    blocks = [nn.Embedding(30522, 16), nn.Sequential(nn.Linear(16, 16), nn.Tanh())]
    exits = [nn.Sequential(nn.Linear(16, 2), MeanOverTokens()) for _ in blocks]
    tokenizer = TextTokenizer(Tokenizer.from_file(str(TOKENIZER)), 32)
    ids = [torch.from_numpy(tokenizer.encode_utf8(t)) for t in (b"Great film.", b"Dull, and far too long.")]
    net = EarlyExitNetwork(
        name="tiny-text",
        blocks=blocks,
        exits=exits,
        example=ids[0],
        labels=["negative", "positive"],
        preprocessing=spec,
        data=CheckData(ids, [1, 0]),
    )
    manifest = write_package(net, tmp_path / "text")
    assert manifest.task == "text-classification" and manifest.input.max_tokens == 32
    assert manifest.blocks[0].input.shape == [None, None] and manifest.blocks[0].input.vocab_size == 30522
    assert manifest.blocks[1].input.shape == [None, None, 16] and len(manifest.exit_accuracy) == 2


class MeanOverTokens(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=1)


class Histogram(nn.Module):
    """Adds nothing, but through ``torch.histc``, which the ONNX exporter does not know."""

    def forward(self, x: Tensor) -> Tensor:
        return x + 0 * torch.histc(x, 4).sum()


class SignBranch(nn.Module):
    """Python control flow on values: tracing keeps only the branch the example took."""

    def forward(self, x: Tensor) -> Tensor:
        return x * 2 if x.sum() > 0 else x * 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: ([conv(1, 4), conv(8, 8)], [head(4, 14), head(8, 7)], {}),
            "tiny: block 2 does not take block 1's output [1, 4, 14, 14]: ",
        ),
        (
            lambda: ([conv(1, 4)], [head(4, 14, classes=7)], {}),
            "tiny: exit 1 gives logits [1, 7] for a batch of 1; with 10 labels it must give [1, 10]",
        ),
        (
            lambda: ([nn.Sequential(conv(1, 4), Histogram())], [head(4, 14)], {}),
            "tiny: ONNX cannot export block 1 or exit 1: Exporting the operator 'aten::histc' to ONNX opset "
            "version 17 is not supported",
        ),
        (
            lambda: ([conv(3, 4)], [head(4, 14)], {"preprocessing": SPEC.model_copy(update={"channels": 3})}),
            "tiny: the example input is float32 [1, 1, 28, 28], but the preprocessing declares float32 [B, 3, 28, 28]",
        ),
        (
            lambda: ([conv(3, 4)], [head(4, 14)], {}),
            "tiny: block 1 does not take the declared input float32 [B, 1, 28, 28]: ",
        ),
        (
            lambda: ([conv(1, 4), conv(4, 8)], [head(4, 14)], {}),
            "tiny: 2 blocks but 1 exit heads; every block needs one",
        ),
    ],
    ids=[
        "block-does-not-feed-next",
        "logits-do-not-match-labels",
        "op-onnx-cannot-export",
        "example-not-declared",
        "model-does-not-fit-input",
        "an-exit-missing",
    ],
)
def test_bad_networks_are_refused_in_one_line(
    images: tuple[Tensor, Tensor], tmp_path: Path, make, message: str
) -> None:
    blocks, exits, changes = make()
    with pytest.raises(PackagingError) as refused:
        write_package(network(images, blocks, exits, **changes), tmp_path / "bad")
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    assert not (tmp_path / "bad").exists() and not list(tmp_path.iterdir())  # nothing half-written is left


def test_parity_failure_names_the_block_and_the_difference(images: tuple[Tensor, Tensor], tmp_path: Path) -> None:
    x, _ = images
    net = network(images, [nn.Sequential(SignBranch(), conv(1, 4))], [head(4, 14)], example=x[:1].abs() + 1)
    net.data = CheckData(-x[:8].abs() - 1)  # the branch the example did not take
    pattern = r"^block1\.onnx logits differs from torch by [0-9.e+-]+ > 0\.0001 on data batch 1$"
    with pytest.raises(ParityError, match=pattern):
        write_package(net, tmp_path / "drift")


def test_the_command_packages_a_file_and_refuses_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad_net.py"
    bad.write_text(
        "from torch import nn\nfrom splitexit.packaging import EarlyExitNetwork, ImageInput\nimport torch\n"
        "def describe():\n"
        "    spec = ImageInput(channels=1, height=28, width=28, mean=0.0, std=1.0)\n"
        "    return EarlyExitNetwork(name='bad', blocks=[nn.Conv2d(1, 4, 3)], exits=[nn.Flatten()],\n"
        "        example=torch.zeros(1, 1, 28, 28), labels=['a', 'b'], preprocessing=spec)\n"
    )
    command = [sys.executable, "-m", "splitexit", "package"]
    result = subprocess.run(
        [*command, f"{bad}:describe", "--out", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "splitexit package: bad: exit 1 gives logits [1, 2704] for a batch of 1; with 2 labels it must give [1, 2]"
    )
    missing = subprocess.run(
        [*command, f"{bad}:nothing", "--out", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert missing.returncode == 1 and missing.stderr.strip() == f"splitexit package: {bad} has no function 'nothing'"


def test_serving_and_the_client_never_import_torch() -> None:
    modules = "splitexit, splitexit.cli, splitexit.device.server, splitexit.edge.server, splitexit.cloud.server"
    check = f"import sys, {modules}; sys.exit('torch' in sys.modules or 'onnx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True).returncode == 0


def test_data_that_is_not_the_declared_input_is_refused(images: tuple[Tensor, Tensor], tmp_path: Path) -> None:
    x, y = images
    net = network(images, [conv(1, 4)], [head(4, 14)], data=CheckData(x[:, :, :14], y))
    with pytest.raises(PackagingError, match=r"^tiny: data batch 1 is float32 \[256, 1, 14, 28\], but the prepro"):
        write_package(net, tmp_path / "bad")


def test_without_torch_the_command_says_what_to_install(tmp_path: Path) -> None:
    no_torch = "import sys; sys.modules['torch'] = None; from splitexit.cli import main; main(sys.argv[1:])"
    argv = [sys.executable, "-c", no_torch, "package", "net.py:describe", "--out", str(tmp_path / "out")]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip() == (
        "splitexit package: needs torch, onnx and tqdm (torch is missing): pip install 'splitexit[package]'"
    )


def test_the_testbed_refuses_a_models_dir_that_is_not_a_folder(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "splitexit", "testbed", "--models-dir", str(tmp_path / "none")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"splitexit testbed: --models-dir {tmp_path / 'none'} is not a folder"
