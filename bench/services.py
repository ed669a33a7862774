"""The helper servers ``make bench`` starts next to the tiers, as subprocesses it stops itself."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx

from splitexit.testbed import LOOPBACK, free_port

START_TIMEOUT_S = 60.0


@contextmanager
def _service(
    command: Sequence[str], port: int, ready: Callable[[], bool], log: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:  # its own process group: LitServe and Triton start processes of their own
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(command)} did not start; see {log}")
            time.sleep(0.2)
        yield f"{LOOPBACK}:{port}"
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the service's process group (it and every worker it started), SIGKILL what is left after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def echo_service(log_dir: Path) -> Iterator[str]:
    """``bench.echo`` on a free port: yields its address."""
    port = free_port()

    def ready() -> bool:
        with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return True
            except grpc.FutureTimeoutError:
                return False

    with _service([sys.executable, "-m", "bench.echo", str(port)], port, ready, log_dir / "echo.log") as address:
        yield address


@contextmanager
def litserve_service(log_dir: Path) -> Iterator[str]:
    """``bench.litserve_app`` on a free port: yields its ``/predict`` URL."""
    port = free_port()

    def ready() -> bool:
        try:
            return httpx.get(f"http://{LOOPBACK}:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    command = [sys.executable, "-m", "bench.litserve_app", str(port)]
    with _service(command, port, ready, log_dir / "litserve.log") as address:
        yield f"http://{address}/predict"


@contextmanager
def triton_service(python: Path, models_dir: Path, log_dir: Path) -> Iterator[str]:
    """``bench/triton_app.py`` run by ``python`` (the PyTriton environment) on free ports: yields its gRPC address.

    Triton's Python-backend stub links ``libpython3.X.so``: the interpreter's ``lib`` folder goes on
    ``LD_LIBRARY_PATH``.
    """
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    where = [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"]
    libdir = subprocess.run(where, capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))}
    app = Path(__file__).with_name("triton_app.py")
    ports = [str(grpc_port), str(http_port), str(metrics_port)]

    def ready() -> bool:
        try:
            return httpx.get(f"http://{LOOPBACK}:{http_port}/v2/models/fmnist/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    with tempfile.TemporaryDirectory(prefix="pytriton-") as workspace:
        command = [str(python), str(app), str(models_dir), *ports, str(Path(workspace) / "triton")]
        with _service(command, grpc_port, ready, log_dir / "triton.log", env) as address:
            yield address
