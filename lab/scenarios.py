"""The test streams ``make evaluate`` replays, and their per-exit outcomes, computed once.

A scenario names a model package, a data set and the phases its stream passes
through (a later phase may corrupt the inputs: Gaussian noise, blur). The
outcomes at every exit (C_k and the predicted label, through onnxruntime on the
package's own segments) are computed once per scenario and package version and
cached as ``$SPLITEXIT_CACHE_DIR/exits/<scenario>-<key>.npz``.

The list :data:`SCENARIOS` is data: a scenario whose model package or data set
is not there is skipped with a message saying what is missing. Each has a
**validation** stream (:data:`VALIDATION`), disjoint from its test stream,
on which every hyperparameter is chosen: for Fashion-MNIST the test set's
images 0..4999 with the same phases and corruptions (the reported stream is
images 5000..9999; the CNN trained on neither); for sentiment the
held-out 20 % of the training domains (amazon + yelp, never trained on); for
BBC the first half of the held-out 20 % (the second half is the test stream).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab import fashion_mnist
from splitexit.policies.chain import Chain
from splitexit.policies.dimee import embed
from splitexit.policies.replay import ExitStream
from splitexit.shared.manifest import BlockRange, ImageInput, Manifest, TextInput, load_manifest
from splitexit.shared.preprocess import normalize_images
from splitexit.shared.runtime import HostedModel, exit_probabilities
from splitexit.shared.tiers import TIERS, Tier

ROOT = Path(__file__).resolve().parents[1]


class ScenarioUnavailable(RuntimeError):
    """The scenario's model package or data cannot be had here; the message says why."""


@dataclass(frozen=True)
class Phase:
    """One stationary part of a stream; images may be corrupted (intensities in [0, 1])."""

    name: str = "clean"
    noise_std: float = 0.0  # Gaussian pixel noise
    blur_sigma: float = 0.0  # Gaussian blur, in pixels


LARGE_MODELS_DIR = "models-large"  # the 12-layer encoder's packages, which `make models-large` completes


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    title: str
    model: str  # package folder under the models dir
    data: str  # a key of LOADERS
    phases: tuple[Phase, ...] = (Phase(),)
    options: dict[str, Any] = field(default_factory=dict)  # for the loader
    models_dir: str | None = None  # its package's folder (relative to the repo) if not the evaluation's models dir

    def package_dir(self, models_dir: Path) -> Path:
        """Its model package: in its own ``models_dir`` if it names one, else in ``models_dir``."""
        return (ROOT / self.models_dir if self.models_dir else models_dir) / self.model


DRIFT = (Phase("clean"), Phase("noise σ=0.2", noise_std=0.2), Phase("blur σ=1", blur_sigma=1.0))
GRADUAL = (Phase("clean"), *(Phase(f"noise σ={std:g}", noise_std=std) for std in (0.075, 0.15, 0.225, 0.3)))
SHIFT_BACK = (Phase("clean"), Phase("blur σ=1.5", blur_sigma=1.5), Phase("clean again"))
# I-SplitEE's distortions, each at three strengths: one phase each, replayed as a stream of its own.
DISTORTIONS = (
    *(Phase(f"noise σ={std:g}", noise_std=std) for std in (0.1, 0.2, 0.3)),
    *(Phase(f"blur σ={sigma:g}", blur_sigma=sigma) for sigma in (0.5, 1.0, 1.5)),
)
BBC_SPLIT = {"test_fraction": 0.2, "seed": 0}  # the training's held-out 20 %


def fmnist(name: str, title: str, phases: tuple[Phase, ...] = (Phase(),)) -> tuple[Scenario, Scenario]:
    """A Fashion-MNIST stream on the test half of the test set, and its twin on the validation half
    (:data:`lab.fashion_mnist.HALVES`): the same phases and corruptions, other images."""
    test = Scenario(
        name=name, title=title, model="fmnist-cnn", data="fashion-mnist", phases=phases, options={"half": "test"}
    )
    return test, Scenario(
        name=f"{name}-val",
        title=f"{title} (validation half)",
        model="fmnist-cnn",
        data="fashion-mnist",
        phases=phases,
        options={"half": "validation"},
    )


FMNIST = (
    fmnist("fmnist-clean", "Fashion-MNIST, clean test images 5000..9999"),
    fmnist("fmnist-drift", "Fashion-MNIST, the stream turns noisy, then blurred (I-SplitEE's setting)", DRIFT),
    fmnist("fmnist-gradual", "Fashion-MNIST, noise growing step by step (a gradual drift)", GRADUAL),
    fmnist("fmnist-shift-back", "Fashion-MNIST, the stream turns blurred, then clean again", SHIFT_BACK),
)
DISTORTED = fmnist(
    "fmnist-distortions", "Fashion-MNIST under Gaussian noise and blur, three strengths each", DISTORTIONS
)
SCENARIOS = (
    *(test for test, _ in FMNIST),
    Scenario(
        name="sentiment-imdb",
        title="Sentiment, trained on amazon + yelp, deployed on imdb (SplitEE's cross-domain setting)",
        model="minilm-sentiment",
        data="sentiment",
        options={"domain": "imdb"},
    ),
    Scenario(
        name="bbc-topic",
        title="BBC News topic, the second half of the held-out 20 % (seed 0)",
        model="minilm-bbc-topic",
        data="bbc",
        options={**BBC_SPLIT, "half": "test"},
    ),
    Scenario(
        name="sentiment-imdb-mpnet",
        title="Sentiment on imdb, all-mpnet-base-v2 with an exit after each of its 12 layers (the papers' scale)",
        model="mpnet-sentiment",
        data="sentiment",
        options={"domain": "imdb"},
        models_dir=LARGE_MODELS_DIR,
    ),
    Scenario(
        name="bbc-topic-mpnet",
        title="BBC News topic, all-mpnet-base-v2 with an exit after each of its 12 layers, the second half of the "
        "held-out 20 % (seed 0)",
        model="mpnet-bbc-topic",
        data="bbc",
        options={**BBC_SPLIT, "half": "test"},
        models_dir=LARGE_MODELS_DIR,
    ),
)
SENTIMENT_HELDOUT = {"domains": ["amazon", "yelp"], "test_fraction": 0.2, "seed": 0}
VALIDATION = {
    **{test.name: validation for test, validation in FMNIST},
    "sentiment-imdb": Scenario(
        name="sentiment-val",
        title="Sentiment, the held-out 20 % of amazon + yelp",
        model="minilm-sentiment",
        data="sentiment-heldout",
        options=SENTIMENT_HELDOUT,
    ),
    "sentiment-imdb-mpnet": Scenario(
        name="sentiment-val-mpnet",
        title="Sentiment, the held-out 20 % of amazon + yelp, all-mpnet-base-v2",
        model="mpnet-sentiment",
        data="sentiment-heldout",
        options=SENTIMENT_HELDOUT,
        models_dir=LARGE_MODELS_DIR,
    ),
    "bbc-topic": Scenario(
        name="bbc-topic-val",
        title="BBC News topic, the first half of the held-out 20 %",
        model="minilm-bbc-topic",
        data="bbc",
        options={**BBC_SPLIT, "half": "validation"},
    ),
    "bbc-topic-mpnet": Scenario(
        name="bbc-topic-val-mpnet",
        title="BBC News topic, the first half of the held-out 20 %, all-mpnet-base-v2",
        model="mpnet-bbc-topic",
        data="bbc",
        options={**BBC_SPLIT, "half": "validation"},
        models_dir=LARGE_MODELS_DIR,
    ),
}


@dataclass(frozen=True)
class Inputs:
    """Block-1 inputs (one ``[1, ...]`` array per sample), labels and phases."""

    samples: list[np.ndarray]
    labels: np.ndarray
    phases: np.ndarray


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Blur float ``[N, H, W]`` images with a separable Gaussian (reflected borders)."""
    radius = max(int(np.ceil(3 * sigma)), 1)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    height, width = images.shape[1:]
    padded = np.pad(images, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
    images = sum(w * padded[:, i : i + height, :] for i, w in enumerate(kernel))
    padded = np.pad(images, ((0, 0), (0, 0), (radius, radius)), mode="reflect")
    return sum(w * padded[:, :, i : i + width] for i, w in enumerate(kernel))


def corrupt(pixels: np.ndarray, phase: Phase, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[N, H, W]`` images as ``phase`` sees them, still uint8 (what a client could send)."""
    images = pixels.astype(np.float64) / 255.0
    if phase.blur_sigma:
        images = gaussian_blur(images, phase.blur_sigma)
    if phase.noise_std:
        images = images + rng.normal(0.0, phase.noise_std, images.shape)
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def fashion_mnist_inputs(scenario: Scenario, manifest: Manifest, package_dir: Path) -> Inputs:
    """One half of the test set (:func:`lab.fashion_mnist.held_out_half`), split (seeded) into equal parts, one per
    phase."""
    assert isinstance(manifest.input, ImageInput)
    pixels, labels = fashion_mnist.held_out_half(scenario.options["half"])
    rng = np.random.default_rng(0)
    parts = np.array_split(rng.permutation(len(labels)), len(scenario.phases))
    samples: list[np.ndarray] = []
    chosen_labels, phases = [], []
    for p, (phase, part) in enumerate(zip(scenario.phases, parts, strict=True)):
        x = normalize_images(corrupt(pixels[part], phase, rng), manifest.input)
        samples.extend(x[i : i + 1] for i in range(len(part)))
        chosen_labels.append(labels[part])
        phases.append(np.full(len(part), p))
    return Inputs(samples, np.concatenate(chosen_labels).astype(np.int64), np.concatenate(phases))


def _text_inputs(texts: Sequence[str], labels: Sequence[int], manifest: Manifest, package_dir: Path) -> Inputs:
    from splitexit.shared.tokenizer import TextTokenizer

    assert isinstance(manifest.input, TextInput)
    tokenizer = TextTokenizer.from_package(package_dir, manifest.input)
    samples = [tokenizer.encode_utf8(text.encode(), truncate=True) for text in texts]
    return Inputs(samples, np.array(labels, dtype=np.int64), np.zeros(len(samples), dtype=np.int64))


def sentiment_inputs(scenario: Scenario, manifest: Manifest, package_dir: Path) -> Inputs:
    """Every sentence of the deployment domain (the model never saw it)."""
    from lab.text_data import sentiment

    records = sentiment(scenario.options["domain"])
    return _text_inputs([r.text for r in records], [r.label for r in records], manifest, package_dir)


def sentiment_heldout_inputs(scenario: Scenario, manifest: Manifest, package_dir: Path) -> Inputs:
    """The held-out part of each training domain's seeded split (the model never trained on it)."""
    from lab.text_data import sentiment, split_indices

    texts, labels = [], []
    for domain in scenario.options["domains"]:
        records = sentiment(domain)
        _, held = split_indices(len(records), scenario.options["test_fraction"], scenario.options["seed"])
        texts += [records[i].text for i in held]
        labels += [records[i].label for i in held]
    return _text_inputs(texts, labels, manifest, package_dir)


def half_of(indices: np.ndarray, half: str) -> np.ndarray:
    """The ``"validation"`` or ``"test"`` half of ``indices``, split at random (seed 1), sorted."""
    halves = np.array_split(np.random.default_rng(1).permutation(indices), 2)
    return np.sort(halves[0 if half == "validation" else 1])


def bbc_inputs(scenario: Scenario, manifest: Manifest, package_dir: Path) -> Inputs:
    """One half of the held-out articles of the training's seeded split."""
    from lab.text_data import bbc_news, split_indices

    articles, _ = bbc_news()
    _, held = split_indices(len(articles), scenario.options["test_fraction"], scenario.options["seed"])
    chosen = half_of(held, scenario.options["half"])
    return _text_inputs([articles[i].text for i in chosen], [articles[i].label for i in chosen], manifest, package_dir)


LOADERS: dict[str, Callable[[Scenario, Manifest, Path], Inputs]] = {
    "fashion-mnist": fashion_mnist_inputs,
    "sentiment": sentiment_inputs,
    "sentiment-heldout": sentiment_heldout_inputs,
    "bbc": bbc_inputs,
}


def exit_outcomes(
    package_dir: Path, manifest: Manifest, samples: Sequence[np.ndarray], batch: int = 256, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``(C [N, L], predicted label [N, L])`` at every exit, through the package's ONNX segments.

    C is the top :func:`splitexit.shared.runtime.exit_probabilities` of each exit's logits, as
    the tiers compute it (at the exit's calibrated temperature). ``batch`` stacks same-shaped
    samples (1: exactly the tiers' batch-1 runs).
    """
    whole = BlockRange(first=1, last=manifest.num_blocks)
    model = HostedModel(
        package_dir,
        manifest,
        Chain(manifest.num_blocks, {t: whole for t in TIERS}),
        tier=Tier.CLOUD,
        onnx_threads=threads,
    )
    confidences = np.empty((len(samples), manifest.num_blocks))
    predictions = np.empty((len(samples), manifest.num_blocks), dtype=np.int64)
    start = 0
    while start < len(samples):
        stop = start + 1
        while stop < len(samples) and stop - start < batch and samples[stop].shape == samples[start].shape:
            stop += 1
        x = np.concatenate(samples[start:stop])
        for block in range(1, manifest.num_blocks + 1):
            logits, x = model.run_block(block, x)
            confidences[start:stop, block - 1] = exit_probabilities(logits, manifest.block(block)).max(axis=1)
            predictions[start:stop, block - 1] = logits.argmax(axis=1)
        start = stop
    return confidences, predictions


def stream_for(inputs: Inputs, package_dir: Path, manifest: Manifest, batch: int = 256) -> ExitStream:
    confidences, predictions = exit_outcomes(package_dir, manifest, inputs.samples, batch)
    embeddings = np.stack([embed(x) for x in inputs.samples])
    return ExitStream(
        confidences=confidences,
        predictions=predictions,
        labels=inputs.labels,
        embeddings=embeddings,
        phases=inputs.phases,
    )


def load_stream(scenario: Scenario, models_dir: Path, cache_dir: Path) -> ExitStream:
    """The scenario's exit outcomes, from the cache or computed now (raises :class:`ScenarioUnavailable`)."""
    package_dir = scenario.package_dir(models_dir)
    if not (package_dir / "block1.onnx").is_file():
        build = "make models-large" if scenario.models_dir == LARGE_MODELS_DIR else "make train"
        raise ScenarioUnavailable(f"no model package {package_dir} (build it with `{build}`)")
    manifest = load_manifest(package_dir)
    key = hashlib.sha256(
        json.dumps([asdict(scenario), [(b.sha256, b.temperature) for b in manifest.blocks]], sort_keys=True).encode()
    ).hexdigest()[:12]
    path = cache_dir / "exits" / f"{scenario.name}-{key}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return ExitStream(**{name: cached[name] for name in ExitStream.__dataclass_fields__})
    try:
        inputs = LOADERS[scenario.data](scenario, manifest, package_dir)
    except (ImportError, RuntimeError, OSError) as exc:
        raise ScenarioUnavailable(f"its data cannot be loaded: {exc}") from exc
    stream = stream_for(inputs, package_dir, manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npz")
    np.savez_compressed(temporary, **asdict(stream))
    temporary.replace(path)
    return stream
