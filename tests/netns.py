"""Helpers for the namespace testbed's tests: a loud skip where it cannot run, timed requests, leftovers.

:func:`netns_testbed` gives a :class:`~splitexit.netns.NetnsTestbed` or skips
the test, saying why, when this process is not root or lacks ``ip``/``tc``
(as root without ``ip``, it first installs Debian's ``iproute2``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from splitexit.client import AsyncClient, request
from splitexit.netns import NetnsTestbed, run_command, unavailable_reason
from splitexit.results import ClientError
from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier

APT_TIMEOUT_S = 300
MARKER_ENV = "SPLITEXIT_TEST_TESTBED_MARKER"


def _install_iproute2() -> None:
    """``apt-get install iproute2``, quietly; whether it worked shows in :func:`unavailable_reason`."""
    if shutil.which("apt-get") is None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "iproute2"]):
        subprocess.run(command, env=env, capture_output=True, timeout=APT_TIMEOUT_S, check=False)


def require_netns() -> None:
    """Install iproute2 where root lacks it; skip, saying why, where namespaces cannot be made."""
    if os.geteuid() == 0 and shutil.which("ip") is None:
        _install_iproute2()
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"NETWORK-NAMESPACE TESTBED NOT TESTED: {reason}")


def netns_testbed(log_dir: Path, settings: dict[Tier, dict[str, str]] | None = None, marker: str = "") -> NetnsTestbed:
    """A (not yet entered) namespace testbed logging to ``log_dir``, or a skip that says why there is none.

    Its device serves HTTP too; a ``marker`` goes into every tier's environment, for :func:`marked_processes`.
    """
    require_netns()
    env = {MARKER_ENV: marker} if marker else {}
    return NetnsTestbed(settings=settings or {}, env=env, http=True, log_dir=log_dir)


def marked_processes(marker: str) -> list[int]:
    """Pids of the processes whose environment carries ``marker`` (as :func:`netns_testbed` set it)."""
    entry = f"{MARKER_ENV}={marker}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if entry in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue  # it exited meanwhile
    return found


def pids_in(namespace: str) -> list[int]:
    """The processes running in a namespace (``ip netns pids``)."""
    return [int(pid) for pid in run_command(["ip", "netns", "pids", namespace]).stdout.split()]


def timed_answers(
    address: str, images: list[LabelledImage], threshold: float, timeout_s: float = 10.0
) -> list[tuple[float, pb.InferResponse]]:
    """Send the images one at a time; each answer with its seconds from send to answer."""

    async def send() -> list[tuple[float, pb.InferResponse]]:
        answers = []
        async with AsyncClient(address, retries=0) as client:  # faults are the subject: no retries
            for image in images:
                started = time.perf_counter()
                answer = (await client.infer_request(request(image.png, threshold=threshold), timeout_s)).message
                answers.append((time.perf_counter() - started, answer))
        return answers

    return asyncio.run(send())


def answer_or_error(
    address: str, image: LabelledImage, threshold: float, timeout_s: float
) -> pb.InferResponse | grpc.StatusCode:
    """One request's answer, or the status code it failed with."""
    try:
        return timed_answers(address, [image], threshold, timeout_s)[0][1]
    except ClientError as exc:
        return exc.code


def first_answer_within(address: str, image: LabelledImage, threshold: float, within_s: float) -> pb.InferResponse:
    """Retry (2 s deadline each) until the device answers in full (not degraded), for at most ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        outcome = answer_or_error(address, image, threshold, timeout_s=2.0)
        full = isinstance(outcome, pb.InferResponse) and not outcome.degraded
        if full or time.monotonic() > deadline:
            assert full, f"no full answer within {within_s:.0f} s: last {outcome}"
            return outcome  # type: ignore[return-value]
        time.sleep(0.1)


def leftovers(bed: NetnsTestbed) -> list[str]:
    """The testbed's namespaces and interfaces (by name) that still exist, in ``ip netns list`` and ``ip link``."""
    assert bed.network is not None
    namespaces = run_command(["ip", "netns", "list"]).stdout.split()
    links = [line.split(":")[1].strip().split("@")[0] for line in run_command(["ip", "-o", "link"]).stdout.splitlines()]
    ours = set(bed.network.namespaces.values())
    return [name for name in namespaces if name in ours] + [
        name for name in links if name.startswith(bed.network.interface_prefix)
    ]
