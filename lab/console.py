"""The docs' console examples, run for real: ``python -m lab.console`` writes ``docs/results/console.md``.

Starts the three tiers on loopback at their default ports (gRPC 50051, HTTP 8080), runs each command
of :data:`COMMANDS` in a shell from the repository's root, and writes what it typed and what came
back. Lines longer than :data:`WIDTH` are cut, and say so; nothing else is edited.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from lab.results_pages import ROOT, write_page
from splitexit.testbed import Testbed

HTTP_PORT = 8080
WIDTH = 240
COMMANDS = (
    ".venv/bin/splitexit models",
    ".venv/bin/splitexit infer samples/ --top-k 2",
    '.venv/bin/splitexit infer --model minilm-sentiment --text "A wonderful, moving film." --json',
    "curl -s --data-binary @samples/coat.png -H 'Content-Type: image/png' '127.0.0.1:8080/v1/infer?top_k=2'",
    "curl -s --data-binary 'not an image' -H 'Content-Type: image/png' 127.0.0.1:8080/v1/infer",
    ".venv/bin/splitexit infer no-such-file.png",
)


def cut(line: str) -> str:
    return line if len(line) <= WIDTH else f"{line[:WIDTH]}… ({len(line) - WIDTH} more characters cut here)"


def session(command: str) -> str:
    """``$ command``, its output and, if it failed, its exit status, as a console transcript."""
    done = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [f"$ {command}", *(cut(line) for line in (done.stdout + done.stderr).rstrip("\n").split("\n"))]
    if done.returncode != 0:
        lines.append(f"(exit status {done.returncode})")
    return "\n".join(lines)


def main() -> None:
    with Testbed(http_port=HTTP_PORT, log_dir=Path(tempfile.mkdtemp(prefix="splitexit-console-"))):
        transcripts = [session(command) for command in COMMANDS]
    body = (
        "The commands of [../clients.md](../clients.md), run against three tiers started on loopback with their "
        "default settings (`splitexit testbed`):\n\n```console\n" + "\n\n".join(transcripts) + "\n```"
    )
    print(f"wrote {write_page('console', 'The clients, on a console', 'make results', body)}")


if __name__ == "__main__":
    main()
