"""Which data trains, calibrates and tests each shipped package: the splits, in one place.

* Fashion-MNIST (``fmnist-cnn``, trained on the 60,000 training images):
  calibration on test images 0..4999 (the validation half the policies are
  tuned on too), test on 5000..9999.
* Sentiment (``*-sentiment``): trained on 80 % of amazon + yelp (seeded),
  calibrated on their held-out 20 % (the policies' validation stream), tested
  on imdb, the domain it is deployed on and never saw.
* BBC topics (``*-bbc-topic``): trained on a seeded 80 %; of the held-out 20 %,
  the first half (``lab.scenarios.half_of``: the policies' validation stream)
  calibrates, the second half (their test stream) tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lab import fashion_mnist
from lab.scenarios import half_of
from lab.text_data import SENTIMENT_DOMAINS, LabelledText, bbc_news, sentiment, split_indices
from splitexit.shared.manifest import ImageInput
from splitexit.shared.preprocess import normalize_images
from splitexit.shared.tokenizer import TextTokenizer
from training.calibration import Split

TEST_FRACTION = 0.2
SEED = 0
DEPLOY_DOMAIN = "imdb"
TRAIN_DOMAINS = tuple(d for d in SENTIMENT_DOMAINS if d != DEPLOY_DOMAIN)
FMNIST_HALF = 5000
IMAGE_BATCH = 1000


@dataclass(frozen=True, kw_only=True)
class TextSplits:
    train: list[LabelledText]
    calibration: list[LabelledText]
    test: list[LabelledText]
    calibration_name: str
    test_name: str


def labels_of(samples: Sequence[LabelledText]) -> np.ndarray:
    return np.array([s.label for s in samples], dtype=np.int64)


def sentiment_splits(seed: int = SEED) -> TextSplits:
    """Train on 80 % of amazon + yelp, calibrate on their other 20 %, test on all of imdb."""
    train, held = [], []
    for domain in TRAIN_DOMAINS:
        records = sentiment(domain)
        fit, rest = split_indices(len(records), TEST_FRACTION, seed)
        train += [records[i] for i in fit]
        held += [records[i] for i in rest]
    return TextSplits(
        train=train,
        calibration=held,
        test=sentiment(DEPLOY_DOMAIN),
        calibration_name=f"held-out 20 % of {' + '.join(TRAIN_DOMAINS)}",
        test_name=DEPLOY_DOMAIN,
    )


def bbc_splits(seed: int = SEED) -> TextSplits:
    """Train on a seeded 80 %; the held-out 20 % in halves: calibration, then test."""
    articles, _ = bbc_news()
    fit, held = split_indices(len(articles), TEST_FRACTION, seed)
    calibration, test = (half_of(held, half) for half in ("validation", "test"))
    return TextSplits(
        train=[articles[i] for i in fit],
        calibration=[articles[i] for i in calibration],
        test=[articles[i] for i in test],
        calibration_name="first half of the held-out 20 %",
        test_name="second half of the held-out 20 %",
    )


def fmnist_splits(spec: ImageInput) -> tuple[Split, Split]:
    """Normalised test images 0..4999 (calibration) and 5000..9999 (test), in batches, with their labels."""
    pixels, labels = fashion_mnist.load("test")
    halves = []
    for first, last in ((0, FMNIST_HALF), (FMNIST_HALF, len(labels))):
        x = normalize_images(pixels[first:last], spec)
        batches = [x[i : i + IMAGE_BATCH] for i in range(0, len(x), IMAGE_BATCH)]
        halves.append(
            Split(batches, labels[first:last].astype(np.int64), f"Fashion-MNIST test images {first}..{last - 1}")
        )
    return halves[0], halves[1]


def text_split(samples: Sequence[LabelledText], tokenizer: TextTokenizer, name: str) -> Split:
    """Texts as serving tokenizes them (cut to the token limit), one ``[1, T]`` sample each."""
    ids = [tokenizer.encode_utf8(s.text.encode(), truncate=True) for s in samples]
    return Split(ids, labels_of(samples), name)
