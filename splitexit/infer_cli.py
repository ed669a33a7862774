"""``splitexit infer``: classify files, folders, globs and texts through a running device.

Inputs are read as they are sent (one ``InferStream``, ``--concurrency``
samples in flight), so a folder of ten thousand images starts answering at
once; ``--batch N`` sends them N to an ``InferBatch`` message instead, with
``--concurrency`` / N messages in flight (answers then carry no per-hop times).
Each answer is one line (``--json``: one JSON object per line, the answer
exactly as the HTTP gateway returns it, plus ``"input"``); a sample the device
refuses is one line on stderr. At the end, a summary on stderr: answered,
failed by status, where samples exited, latency, and accuracy when an image's
folder is named after one of the model's labels (``shirt/``, ``t-shirt-top/``).

Exit codes: 0 every input answered; 1 some inputs failed; 2 nothing to do or a
usage error (a path that does not exist, text that is not UTF-8, an unknown
model); 3 the device could not be reached or the stream broke.
"""

from __future__ import annotations

import asyncio
import glob
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import grpc

from splitexit.client import TLS, AsyncClient, batch_request, request
from splitexit.results import ClientError, Prediction
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import TIERS

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class UsageError(Exception):
    """Nothing can be sent as asked; exit 2 with this one line."""


@dataclass(frozen=True)
class Input:
    name: str  # the path, or the text quoted
    path: Path | None = None
    text: str | None = None


def slug(name: str) -> str:
    """``T-shirt/top`` -> ``t-shirt-top``: how a label is spelled as a folder name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def expand(patterns: list[str]) -> list[Input]:
    """Files, folders (every image under them, sorted) and globs, in the order given; raises :class:`UsageError`."""
    found: list[Input] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise UsageError(f"{pattern}: the folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif path.exists():
            files = [path]
        elif glob.has_magic(pattern):
            files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not files:
                raise UsageError(f"{pattern}: matches no file")
        else:
            raise UsageError(f"{pattern}: no such file or folder")
        found += [Input(str(p), path=p) for p in files]
    return found


def texts(values: list[str]) -> list[Input]:
    """``--text`` values, each checked to be valid UTF-8 (argv can carry any bytes)."""
    for number, text in enumerate(values, start=1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raw = text.encode("utf-8", "surrogateescape")
            raise UsageError(
                f"--text #{number} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
            ) from None
    return [Input(repr(text), text=text) for text in values]


@dataclass
class Tally:
    """What came back so far, for the progress line and the summary."""

    total: int
    _: KW_ONLY
    started: float = field(default_factory=time.monotonic)
    answers: list[Prediction] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    labelled: int = 0
    correct: int = 0

    def progress(self) -> str:
        done = len(self.answers) + sum(self.errors.values())
        rate = done / max(time.monotonic() - self.started, 1e-9)
        width = 30
        bar = "#" * (width * done // max(self.total, 1))
        failed = f", {sum(self.errors.values())} failed" if self.errors else ""
        return f"\r[{bar:<{width}}] {done}/{self.total}{failed}, {rate:.1f}/s"

    def summary(self) -> str:
        answered, failed = len(self.answers), sum(self.errors.values())
        elapsed = time.monotonic() - self.started
        lines = [
            f"{answered} of {self.total} answered in {elapsed:.2f} s ({(answered + failed) / max(elapsed, 1e-9):.1f}/s)"
        ]
        if failed:
            lines.append("failed: " + ", ".join(f"{code} {n}" for code, n in sorted(self.errors.items())))
        if self.answers:
            exits = Counter(a.exit_tier for a in self.answers)
            lines.append("exited on " + ", ".join(f"{t.value} {exits[t] / answered:.0%}" for t in TIERS))
        if latencies := sorted(a.latency_s * 1e3 for a in self.answers if a.hops):  # none from an older device
            p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
            lines.append(f"device latency mean {statistics.fmean(latencies):.2f} ms, p95 {p95:.2f} ms")
        if self.labelled:
            lines.append(
                f"accuracy {self.correct / self.labelled:.1%} ({self.correct} of {self.labelled} labelled by "
                "folder name)"
            )
        return "\n".join(lines)


def line(item: Input, answer: Prediction, as_json: bool, truth: str | None) -> str:
    if as_json:
        return json.dumps({"input": item.name, **({"true_label": truth} if truth else {}), **answer.to_dict()})
    degraded = f"  DEGRADED: {answer.degradation.message}" if answer.degradation is not None else ""
    top = (
        "  top: " + ", ".join(f"{c.label_name} {c.probability:.3f}" for c in answer.top_k[1:])
        if len(answer.top_k) > 1
        else ""
    )
    return (
        f"{item.name}: {answer.label_name} ({answer.confidence:.3f}) exit {answer.exit_tier.value} block "
        f"{answer.exit_block} "
        f"{answer.latency_s * 1e3:.2f} ms{top}{degraded}"
    )


def messages(items: list[Input], options: dict[str, Any], failures: dict[int, str]) -> Iterator[pb.InferRequest]:
    """Each input as a request, read only when the stream asks for it; unreadable files go to ``failures``."""
    for index, item in enumerate(items):
        if item.path is None:
            yield request(text=item.text, request_id=str(index), **options)
            continue
        try:
            data = item.path.read_bytes()
        except OSError as exc:
            failures[index] = f"cannot read it: {exc.strerror}"
            continue
        yield request(data, request_id=str(index), **options)


def client_options(args: Any) -> dict[str, Any]:
    """The client's keyword arguments from ``--timeout``, ``--tls-*`` and ``--token``."""
    tls = TLS.from_files(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca or args.tls_cert else False
    return {"timeout_s": args.timeout, "tls": tls, "token": args.token}


Result = tuple[int, Prediction | ClientError]  # an input's index and its answer or error


async def streamed(
    client: AsyncClient, items: list[Input], options: dict[str, Any], args: Any, failures: dict[int, str]
) -> AsyncIterator[Result]:
    """Every input on one ``InferStream``, ``--concurrency`` in flight."""
    async for result in client.infer_many(messages(items, options, failures), max_in_flight=args.concurrency):
        yield int(result.request_id), result


async def batched(
    client: AsyncClient, items: list[Input], options: dict[str, Any], args: Any, failures: dict[int, str]
) -> AsyncIterator[Result]:
    """The inputs ``--batch`` to an ``InferBatch`` (images and texts apart), ``--concurrency`` / ``--batch`` in
    flight; a batch refused as a whole is that error for each of its inputs."""
    slots = asyncio.Semaphore(max(1, args.concurrency // args.batch))

    async def send(indices: list[int]) -> list[Result]:
        async with slots:
            data: dict[int, bytes | str] = {}
            for index in indices:
                item = items[index]
                try:
                    data[index] = item.text if item.path is None else item.path.read_bytes()
                except OSError as exc:
                    failures[index] = f"cannot read it: {exc.strerror}"
            if not data:
                return []
            values, ids = list(data.values()), [str(index) for index in data]
            kind = "texts" if isinstance(values[0], str) else "images"
            try:
                answer = await client.infer_batch_request(batch_request(**{kind: values}, request_ids=ids, **options))
            except ClientError as exc:
                return [(index, exc) for index in data]
            failed = answer.failures
            return [(index, failed.get(row) or answer.prediction(row)) for row, index in enumerate(data)]

    chunks = [
        indices[start : start + args.batch]
        for indices in (
            [i for i, item in enumerate(items) if item.path],
            [i for i, item in enumerate(items) if not item.path],
        )
        for start in range(0, len(indices), args.batch)
    ]
    for done in asyncio.as_completed([asyncio.create_task(send(chunk)) for chunk in chunks]):
        for result in await done:
            yield result


async def run(args: Any, items: list[Input], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Send every input, print answers as they come, then the summary; the exit code."""
    options = {
        "model": args.model,
        "threshold": args.threshold,
        "policy": args.policy,
        "top_k": args.top_k,
        "truncate": args.truncate,
    }
    show_progress = args.progress if args.progress is not None else err.isatty() and len(items) > 1
    tally, failures = Tally(len(items)), {}
    async with AsyncClient(args.address, **client_options(args)) as client:
        try:
            info = await client.model(args.model)
        except ClientError as exc:
            print(f"splitexit infer: {args.address}: {exc}", file=err)
            return EXIT_USAGE if exc.code == grpc.StatusCode.NOT_FOUND else EXIT_UNREACHABLE
        labels = {slug(name): index for index, name in enumerate(info.labels)}
        last_drawn = 0.0
        results = (batched if args.batch else streamed)(client, items, options, args, failures)
        try:
            async for index, result in results:
                for failed, reason in list(failures.items()):
                    print(f"{items[failed].name}: {reason}", file=err)
                    tally.errors["UNREADABLE"] += 1
                    del failures[failed]
                item = items[index]
                if isinstance(result, ClientError):
                    tally.errors[result.code.name] += 1
                    print(f"{item.name}: {result}", file=err)
                    continue
                truth = labels.get(slug(item.path.parent.name)) if item.path is not None else None
                if truth is not None:
                    tally.labelled += 1
                    tally.correct += result.label == truth
                tally.answers.append(result)
                print(
                    line(item, result, args.json, info.labels[truth] if truth is not None else None),
                    file=out,
                    flush=True,
                )
                if show_progress and time.monotonic() - last_drawn > 0.1:
                    print(tally.progress(), end="", file=err, flush=True)
                    last_drawn = time.monotonic()
        except ClientError as exc:
            print(f"\nsplitexit infer: the stream to {args.address} broke: {exc}", file=err)
            return EXIT_UNREACHABLE
    for index, reason in failures.items():
        print(f"{items[index].name}: {reason}", file=err)
        tally.errors["UNREADABLE"] += 1
    if show_progress:
        print(tally.progress(), file=err)
    print(tally.summary(), file=err)
    return EXIT_SOME_FAILED if tally.errors else EXIT_OK


def main(args: Any) -> int:
    """``splitexit infer``'s whole run: the exit code (never a traceback for bad input)."""
    try:
        items = expand(args.inputs) + texts(args.text)
        if not items:
            raise UsageError('give image files, folders or globs, or --text "..." (with --model naming a text model)')
        if args.concurrency < 1 or args.batch < 0 or (args.timeout is not None and args.timeout <= 0):
            raise UsageError("--concurrency must be at least 1, --batch at least 0 and --timeout above 0")
        return asyncio.run(run(args, items))
    except UsageError as exc:
        print(f"splitexit infer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nsplitexit infer: interrupted", file=sys.stderr)
        return 130
