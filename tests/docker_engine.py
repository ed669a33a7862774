"""A real Docker engine for the engine tests, and compose projects on it.

:func:`ensure_engine` finds an engine that answers, or (as root) installs
Debian's ``docker.io`` and Compose v2 and starts ``dockerd``; :func:`build_images`
builds the local base (deploy/base/build-base.sh), the serving image and the
local Prometheus once per test run (later builds hit the layer cache).
:class:`Stack` is one compose project under a name of its own, with every port
on a random 127.0.0.1 port (docker-compose.local.yml), so runs never clash.
Every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from splitexit.client import TLS
from splitexit.testbed import PkiFiles
from tests.deploy_files import COMPOSE_FILE, ROOT

LOCAL_FILE = ROOT / "docker-compose.local.yml"
BASE_IMAGE = "splitexit-base:bookworm"
SERVING_IMAGE = "splitexit:latest"
DOCKERD_LOG = Path("/tmp/splitexit-test-dockerd.log")
COMPOSE_DEB_SUITE = "trixie"  # bookworm's docker-compose is v1; trixie's static v2 binary runs on bookworm
CLI_PLUGINS = Path("/usr/libexec/docker/cli-plugins")


class EngineUnavailable(RuntimeError):
    """No Docker engine can run here; the message says why."""


def run(
    command: list[str], timeout_s: float, check: bool = True, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``command`` run in ``cwd`` with output captured; a failure raises with the tail of its output."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=cwd, env=env)
    if check and done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` exited {done.returncode}: {(done.stdout + done.stderr)[-3000:]}")
    return done


def engine_answers() -> bool:
    return shutil.which("docker") is not None and run(["docker", "info"], 30, check=False).returncode == 0


def ensure_engine() -> subprocess.Popen[bytes] | None:
    """An engine that answers; returns the ``dockerd`` this call started (the caller stops it), else None."""
    if engine_answers() and run(["docker", "compose", "version"], 30, check=False).returncode == 0:
        return None
    install_engine_packages()
    if run(["docker", "compose", "version"], 30, check=False).returncode != 0:
        install_compose_plugin()
    daemon = None
    if not engine_answers():
        with DOCKERD_LOG.open("ab") as log:
            daemon = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not engine_answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                stop_engine(daemon)
                tail = DOCKERD_LOG.read_text()[-2000:]
                raise EngineUnavailable(f"dockerd did not come up within 60 s (log {DOCKERD_LOG}): {tail}")
            time.sleep(1)
    return daemon


def install_engine_packages() -> None:
    """Debian's ``docker.io`` (engine and CLI) and ``debootstrap`` unless ``dockerd`` is there; needs root."""
    if shutil.which("dockerd") is not None and shutil.which("docker") is not None:
        return
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers, and installing and starting one needs root")
    run(["apt-get", "update"], 300)
    run(["apt-get", "install", "-y", "--no-install-recommends", "docker.io", "debootstrap"], 600)


def install_compose_plugin(plugins: Path = CLI_PLUGINS) -> Path:
    """Debian trixie's docker-compose package (Compose v2), unpacked as a CLI plugin into ``plugins``; apt's
    own lists are left alone. Returns the plugin's path."""
    work = Path(run(["mktemp", "-d", "/tmp/splitexit-compose.XXXXXX"], 10).stdout.strip())
    try:
        (work / "lists" / "partial").mkdir(parents=True)
        (work / "sources.list").write_text(f"deb http://deb.debian.org/debian {COMPOSE_DEB_SUITE} main\n")
        apt = [
            "-o",
            f"Dir::Etc::SourceList={work / 'sources.list'}",
            "-o",
            "Dir::Etc::SourceParts=-",
            "-o",
            f"Dir::State::Lists={work / 'lists'}",
        ]
        run(["apt-get", *apt, "update"], 300)
        run(["apt-get", *apt, "download", f"docker-compose/{COMPOSE_DEB_SUITE}"], 300, cwd=work)
        [package] = work.glob("docker-compose_*.deb")
        run(["dpkg-deb", "-x", str(package), str(work / "root")], 120)
        plugins.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(work / "root" / CLI_PLUGINS.relative_to("/") / "docker-compose", plugins))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stop_engine(daemon: subprocess.Popen[bytes] | None) -> None:
    """Stop the ``dockerd`` :func:`ensure_engine` started (none if it found one running)."""
    if daemon is None or daemon.poll() is not None:
        return
    daemon.terminate()
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(timeout=10)


def build_images() -> dict[str, float]:
    """The local base, the serving image and the local Prometheus; seconds each build took."""
    took = {}
    for name, command in {
        "base": [str(ROOT / "deploy" / "base" / "build-base.sh"), BASE_IMAGE],
        "serving": ["docker", "build", "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "-t", SERVING_IMAGE, "."],
        "prometheus": [*Stack("splitexit-build").compose, "build", "prometheus"],
    }.items():
        started = time.monotonic()
        run(command, 900, env={**os.environ, "SPLITEXIT_BASE_IMAGE": BASE_IMAGE})
        took[name] = round(time.monotonic() - started, 1)
    return took


class Stack:
    """One compose project of docker-compose.yml + docker-compose.local.yml."""

    def __init__(self, purpose: str) -> None:
        self.project = f"{purpose}-{uuid.uuid4().hex[:8]}"
        self.compose = ["docker", "compose", "-p", self.project, "-f", str(COMPOSE_FILE), "-f", str(LOCAL_FILE)]
        self.tls: TLS | bool = False  # how clients on the host connect, once :meth:`fetch_certificates` ran
        self.ca_file = Path()

    def fetch_certificates(self, dest: Path) -> None:
        """Copy the stack's CA and client certificate (the ``certs`` volume, via the device) for host clients."""
        self("cp", "device:/certs/.", str(dest))
        self.tls = PkiFiles.of(dest, "client").client_tls()
        self.ca_file = dest / "ca.pem"

    def __call__(self, *args: str, timeout_s: float = 120) -> str:
        return run([*self.compose, *args], timeout_s).stdout

    def up(self, *services: str, scale: dict[str, int] | None = None, timeout_s: int = 240) -> None:
        scales = [f"--scale={name}={count}" for name, count in (scale or {}).items()]
        self(
            "up",
            "-d",
            "--no-build",
            "--wait",
            f"--wait-timeout={timeout_s}",
            *scales,
            *services,
            timeout_s=timeout_s + 30,
        )

    def address(self, service: str, port: int, index: int = 1) -> str:
        """The 127.0.0.1:PORT that ``service``'s replica ``index`` publishes ``port`` on."""
        return self("port", f"--index={index}", service, str(port)).strip()

    def containers(self, service: str) -> list[str]:
        return sorted(self("ps", "-q", service).split())

    def kill_process(self, container: str) -> None:
        """SIGKILL the container's main process from the host: a crash, so its restart policy applies
        (``docker kill`` counts as a stop the user asked for)."""
        pid = run(["docker", "inspect", "-f", "{{.State.Pid}}", container], 30).stdout.strip()
        os.kill(int(pid), 9)

    def restarts(self, container: str) -> int:
        return int(run(["docker", "inspect", "-f", "{{.RestartCount}}", container], 30).stdout.strip())

    def logs(self) -> str:
        return run([*self.compose, "logs", "--no-color", "--tail=40"], 60, check=False).stdout

    def down(self) -> None:
        run([*self.compose, "down", "-v", "--remove-orphans", "--timeout=10"], 180, check=False)


@contextlib.contextmanager
def running_stack(purpose: str, services: tuple[str, ...], scale: dict[str, int] | None = None) -> Iterator[Stack]:
    """A stack of ``services`` up and healthy for the ``with`` block, its logs printed if it fails to come up,
    and ``down -v`` after."""
    stack = Stack(purpose)
    started = time.monotonic()
    try:
        stack.up(*services, scale=scale)
        stack.fetch_certificates(Path(tempfile.mkdtemp(prefix=f"{purpose}-certs-")))
        print(f"\n{purpose}: {services} {scale or ''} healthy after {time.monotonic() - started:.1f} s")
        yield stack
    except Exception:
        print(stack.logs())
        raise
    finally:
        stack.down()
