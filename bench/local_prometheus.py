"""A real Prometheus over the local testbed, and the dashboard's PromQL, for tests and the docs' picture.

In compose, Prometheus scrapes the tiers by service name (``device:9101`` ...,
``deploy/prometheus/prometheus.yml``). :func:`local_config` rewrites that same
file for tiers listening on loopback ports, with a short scrape interval, and
:class:`LocalPrometheus` runs the ``prometheus`` binary of Debian's package on
it, in a temporary folder, and queries it over its HTTP API.
:func:`dashboard_queries` reads every panel's PromQL from the Grafana dashboard
and fills in the Grafana variables it uses, so the same expressions Grafana
draws can be asked of any Prometheus.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "splitexit.json"
DEBIAN_PACKAGE = "prometheus"
START_TIMEOUT_S = 30.0


class PrometheusUnavailable(RuntimeError):
    """Neither installed nor installable here (installing needs root and apt-get)."""


def ensure_prometheus() -> tuple[str, str]:
    """Paths of ``prometheus`` and ``promtool``, installing Debian's package first if they are missing."""
    found = shutil.which("prometheus"), shutil.which("promtool")
    if all(found):
        return found  # type: ignore[return-value]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PrometheusUnavailable(
            "prometheus/promtool are not installed and this user cannot install them; run "
            f"`sudo apt-get update && sudo apt-get install -y --no-install-recommends {DEBIAN_PACKAGE}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", DEBIAN_PACKAGE]):
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise PrometheusUnavailable(f"`{' '.join(command)}` failed: {result.stderr.strip()[-2000:]}")
    found = shutil.which("prometheus"), shutil.which("promtool")
    if not all(found):
        raise PrometheusUnavailable(f"the {DEBIAN_PACKAGE} package did not provide prometheus and promtool")
    return found  # type: ignore[return-value]


def local_config(targets: Mapping[str, str], scrape_interval: str = "1s") -> dict[str, Any]:
    """The repository's Prometheus config with every service it looks up in DNS replaced by the
    static target ``targets[service]``."""
    config = copy.deepcopy(yaml.safe_load(PROMETHEUS_CONFIG.read_text()))
    config["global"].update(
        scrape_interval=scrape_interval, scrape_timeout=scrape_interval, evaluation_interval=scrape_interval
    )
    for job in config["scrape_configs"]:
        services = [name for group in job.pop("dns_sd_configs") for name in group["names"]]
        missing = [service for service in services if service not in targets]
        if missing:
            raise KeyError(f"no local address for the targets {missing} of job {job['job_name']!r}")
        job["static_configs"] = [{"targets": [targets[service] for service in services]}]
    return config


class LocalPrometheus:
    """``with LocalPrometheus(binary, config, port) as prom: prom.query("up")``."""

    def __init__(self, binary: str, config: dict[str, Any], port: int) -> None:
        self.binary = binary
        self.config = config
        self.url = f"http://127.0.0.1:{port}"
        self._folder = tempfile.TemporaryDirectory(prefix="splitexit-prometheus-")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalPrometheus:
        folder = Path(self._folder.name)
        config_file = folder / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        self.log_path = folder / "prometheus.log"
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address={self.url.removeprefix('http://')}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._folder.cleanup()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited at start:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus was not ready within {START_TIMEOUT_S:.0f} s")

    def _api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = json.load(reply)
        if body["status"] != "success":
            raise RuntimeError(f"{path} {params}: {body.get('error')}")
        return body["data"]["result"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant vector now: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        return self._api("query", query=expr)

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        """Range matrix: ``[{"metric": {...}, "values": [[t, "v"], ...]}, ...]``."""
        return self._api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step_s:g}")

    def wait_until(
        self, expr: str, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 20.0
    ) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``done(result)`` holds (e.g. the last requests have been scraped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if done(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr!r} still gives {result} after {timeout_s:.0f} s")
            time.sleep(0.25)


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    legend: str
    expr: str  # PromQL with Grafana's variables filled in


def dashboard_queries(rate_window: str, dashboard: Path = DASHBOARD) -> list[PanelQuery]:
    """Every target of every panel, as plain PromQL: ``$__rate_interval`` -> ``rate_window``, ``$model`` -> all."""
    variables = {"$__rate_interval": rate_window, "$model": ".*"}
    queries = []
    for panel in json.loads(dashboard.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in variables.items():
                expr = expr.replace(name, value)
            if "$" in expr:
                raise ValueError(f"panel {panel['title']!r} uses a variable this helper does not know: {expr}")
            queries.append(PanelQuery(panel["title"], target.get("legendFormat", ""), expr))
    return queries
