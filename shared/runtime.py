"""The models a tier hosts, as onnxruntime sessions, and the block-by-block loop.

A tier loads only the segments of its hosted range. :meth:`HostedModel.run`
resumes a sample at any hosted block and runs block after block, checking the
threshold at every exit, until a confident exit, the final block, or the
plan's stop point (the sample must then travel on). The loop is plain
synchronous code: servers run it on a worker thread, off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from splitexit.policies.chain import Chain
from splitexit.policies.plan import exits_at, softmax_rows
from splitexit.shared.errors import OutOfRange, UnknownModel
from splitexit.shared.integrity import load_public_key, verify_package
from splitexit.shared.manifest import MANIFEST_FILE, BlockSpec, Manifest, PackageError, verified_segment_path
from splitexit.shared.settings import MODELS_DIR_ENV, HostedRanges
from splitexit.shared.tiers import Tier


def exit_probabilities(logits: np.ndarray, block: BlockSpec) -> np.ndarray:
    """Class probabilities of a batch of a block's exit logits: softmax at the exit's calibrated temperature.

    Every confidence C_k the tiers compare with α_k, and every replay of them, comes from here.
    """
    scaled = logits.astype(np.float64)
    return softmax_rows(scaled / block.temperature if block.temperature is not None else scaled)


@dataclass(kw_only=True)
class LocalRun:
    """What one tier did with one sample, which started at its ``Sample.start_block``."""

    last_block: int  # the last block it ran; ``start_block - 1`` if it ran none
    exited: bool = False
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0))  # exit_probabilities of ``logits``
    ranked: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # classes by probability, best first
    activation: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    exit_confidences: list[float] = field(default_factory=list)
    exit_labels: list[int] = field(default_factory=list)
    compute_s: float = 0.0


class HostedModel:
    """One model's hosted segments on one tier, and the chain of tiers it is part of."""

    def __init__(self, package_dir: Path, manifest: Manifest, chain: Chain, *, tier: Tier, onnx_threads: int) -> None:
        self.package_dir = package_dir
        self.manifest = manifest
        self.chain = chain
        self.tier = tier
        self.hosted = chain.hosted[tier]
        options = ort.SessionOptions()
        options.intra_op_num_threads = onnx_threads
        options.inter_op_num_threads = 1
        self._sessions = {
            k: ort.InferenceSession(
                str(verified_segment_path(package_dir, manifest.block(k))),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
            for k in range(self.hosted.first, self.hosted.last + 1)
        }

    @property
    def name(self) -> str:
        return self.manifest.name

    def check_resumable(self, block: int) -> None:
        """Raise :class:`OutOfRange` unless this tier can resume a sample at ``block``."""
        if block not in self.hosted:
            raise OutOfRange(
                f"the {self.tier.value} hosts blocks {self.hosted} of {self.name}; it cannot resume at block {block}"
            )

    def run_block(self, block: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One segment: ``x`` -> (exit logits, activation for the next block)."""
        logits, activation = self._sessions[block].run(["logits", "activation"], {"x": x})
        return logits, activation

    def run(
        self, start_block: int, x: np.ndarray, thresholds: Sequence[Sequence[float]], stop_blocks: Sequence[int]
    ) -> list[LocalRun]:
        """Run a batch of samples from ``start_block``, each until its exit or its own stop block.

        ``x`` stacks the samples on axis 0; sample ``i`` exits after block k if
        C_k > ``thresholds[i][k - 1]`` (or k is the final block) and runs no
        further than ``stop_blocks[i]`` (then it must travel on with its
        activation). Each block runs once for every sample still going, so a
        batch costs one session call per block; a stop block before
        ``start_block`` runs nothing: the sample is relayed as it came.
        """
        runs = [LocalRun(last_block=start_block - 1) for _ in range(len(x))]
        going = list(range(len(x)))  # samples still running, in the order of the rows of ``x``
        started = time.perf_counter()
        block = start_block
        while going:
            staying = [row for row, i in enumerate(going) if stop_blocks[i] < block]
            for row in staying:
                runs[going[row]].activation = x[row : row + 1]
            if staying:
                keep = [row for row, i in enumerate(going) if stop_blocks[i] >= block]
                x, going = x[keep], [going[row] for row in keep]
                if not going:
                    break
            logits, x = self.run_block(block, x)
            probabilities = exit_probabilities(logits, self.manifest.block(block))
            confidences, labels = probabilities.max(axis=1).tolist(), logits.argmax(axis=1).tolist()  # one conversion
            ranked = np.argsort(-probabilities, axis=1, kind="stable")  # for the whole batch at once
            keep = []
            for row, i in enumerate(going):
                run = runs[i]
                run.last_block = block
                run.exit_confidences.append(confidences[row])
                run.exit_labels.append(labels[row])
                run.logits, run.probabilities, run.ranked = logits[row], probabilities[row], ranked[row]
                if exits_at(block, run.exit_confidences[-1], thresholds[i], self.manifest.num_blocks):
                    run.exited = True
                    run.activation = x[row : row + 1]
                else:
                    keep.append(row)
            if len(keep) < len(going):
                x, going = x[keep], [going[row] for row in keep]
            block += 1
        compute_s = time.perf_counter() - started
        for run in runs:
            run.compute_s = compute_s
        return runs


@dataclass(frozen=True, kw_only=True)
class PackageLoader:
    """How one tier turns a package folder into a :class:`HostedModel`: its hosted ranges, threads, signing key."""

    models_dir: Path
    tier: Tier
    hosted: HostedRanges
    onnx_threads: int = 1
    public_key: Ed25519PublicKey | None = None

    def package_dirs(self) -> list[Path]:
        """Every package folder in ``models_dir`` (hidden ones, such as a package being written, aside)."""
        manifests = sorted(self.models_dir.glob(f"*/{MANIFEST_FILE}"))
        return [path.parent for path in manifests if not path.parent.name.startswith(".")]

    def load(self, package_dir: Path) -> HostedModel:
        """Verify the package (``shared/integrity.py``; its signature too with a key) and load the hosted segments."""
        manifest = verify_package(package_dir, self.public_key)
        chain = Chain.of(manifest, self.hosted.get(manifest.name))
        return HostedModel(package_dir, manifest, chain, tier=self.tier, onnx_threads=self.onnx_threads)


def folder_state(package_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file's name, size and modification time: what changes when a package is copied in, edited or replaced."""
    files = sorted(path for path in package_dir.rglob("*") if path.is_file())
    return tuple((str(path.relative_to(package_dir)), *_size_and_mtime(path)) for path in files)


def _size_and_mtime(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except FileNotFoundError:  # removed while we looked: the next look sees the change
        return -1, -1
    return stat.st_size, stat.st_mtime_ns


class ModelRegistry:
    """Every model package in a folder, each loaded with the range this tier hosts.

    :meth:`load_changed` finds packages that are new or changed since they were
    last looked at and loads them beside the models being served;
    :meth:`install` puts one in service. A request holds the :class:`HostedModel`
    it started with, so it finishes on that one whatever is installed meanwhile.
    """

    def __init__(self, models: dict[str, HostedModel], loader: PackageLoader) -> None:
        if not models:
            raise ValueError("no model packages found")
        self._models = models
        self.loader = loader
        self._seen = {model.package_dir: folder_state(model.package_dir) for model in models.values()}

    @classmethod
    def load(
        cls, models_dir: Path, tier: Tier, hosted: HostedRanges, onnx_threads: int = 1, public_key: Path | None = None
    ) -> ModelRegistry:
        """Every package under ``models_dir``, with the chain ``hosted`` describes (manifest defaults elsewhere).

        Each package is verified first (``shared/integrity.py``), its signature too when ``public_key``
        names an ed25519 public key; one that fails raises :class:`PackageError` naming the file.
        """
        key = load_public_key(public_key) if public_key else None
        loader = PackageLoader(
            models_dir=models_dir, tier=tier, hosted=hosted, onnx_threads=onnx_threads, public_key=key
        )
        models = {}
        for package_dir in loader.package_dirs():
            model = loader.load(package_dir)
            models[model.name] = model
        if not models:
            raise PackageError(
                f"no model packages (folders with a manifest.json) in {models_dir}; the {tier.value} looks in its "
                f"models_dir setting, else ${MODELS_DIR_ENV}, else ./models in its working directory"
            )
        unknown = set(hosted) - set(models)
        if unknown:
            raise ValueError(f"hosted ranges name models not in {models_dir}: {sorted(unknown)}")
        return cls(models, loader)

    def load_changed(self) -> list[tuple[Path, HostedModel | Exception]]:
        """Each package folder that is new or changed since last looked at, loaded, or the error that refuses it.

        Blocking (it verifies checksums and opens sessions): run it off the event loop. A folder
        is looked at again only once its files change, so a refused package is refused once.
        """
        found = []
        for package_dir in self.loader.package_dirs():
            state = folder_state(package_dir)
            if self._seen.get(package_dir) == state:
                continue
            self._seen[package_dir] = state
            try:
                model = self.loader.load(package_dir)
                serving = self._models.get(model.name)
                if serving is not None and serving.package_dir != package_dir:
                    raise PackageError(f"{serving.package_dir} already serves the model {model.name!r}")
                found.append((package_dir, model))
            except Exception as exc:  # whatever it is, the package is refused and the tier goes on serving
                found.append((package_dir, exc))
        return found

    def install(self, model: HostedModel) -> HostedModel | None:
        """Serve ``model`` from now on; the model it replaces, if any (requests on it finish there)."""
        replaced = self._models.get(model.name)
        self._models = {**self._models, model.name: model}
        return replaced

    def get(self, name: str) -> HostedModel:
        try:
            return self._models[name]
        except KeyError:
            raise UnknownModel(f"no model named {name!r}; this tier serves {', '.join(sorted(self._models))}") from None

    def __iter__(self) -> Iterator[HostedModel]:
        return iter(list(self._models.values()))
