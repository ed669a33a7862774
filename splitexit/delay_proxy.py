"""A TCP proxy that delays every byte by a one-way delay, changeable at run time: link delay without ``netem``.

This kernel has no ``netem`` (nor any other qdisc that delays: ``fq``, ``etf``
and ``cake`` are missing too), so the namespace testbed emulates a link's
propagation delay in user space. ``python -m splitexit.delay_proxy`` listens on
``--listen``; each connection it accepts gets one to ``--target``, and bytes
read from either side are written to the other ``delay`` seconds after they
were read (a one-way delay in each direction, so a round trip gains twice it).
Buffers are bounded: at most :data:`QUEUED_CHUNKS` reads of up to
:data:`CHUNK_BYTES` wait per direction; beyond that it stops reading, and TCP
pushes back on the sender.

The delay is set by one line on the ``--control`` port: ``delay <ms>`` sets
it (for bytes read from then on), ``delay`` asks; the answer is
``ok <ms>`` or ``error <why>``. What TCP itself measures as the round trip does
not include the delay (each side's connection ends at the proxy), so window
growth is not slowed by it as on a long link: the delay is added latency,
not a longer pipe.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 65536
QUEUED_CHUNKS = 16  # at most 1 MiB held per direction
CONTROL_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 15.0
MAX_DELAY_MS = 10_000.0


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` as ``(host, port)``; ValueError in one line otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is no host:port")
    return host, int(port)


def parse_delay_ms(text: str) -> float:
    """A delay in milliseconds, finite and in [0, :data:`MAX_DELAY_MS`]; ValueError in one line otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is no number of milliseconds") from None
    if not math.isfinite(value) or not 0.0 <= value <= MAX_DELAY_MS:
        raise ValueError(f"a delay must lie in [0, {MAX_DELAY_MS:g}] ms, got {text}")
    return value


class DelayProxy:
    """Forwards connections to ``target``, each byte ``delay_ms`` after it was read, both ways."""

    def __init__(self, target: tuple[str, int], delay_ms: float) -> None:
        self.target = target
        self.delay_ms = delay_ms

    async def connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """One accepted connection: open one to the target and pump both ways until both ends close."""
        try:
            target_reader, target_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        pumps = [
            asyncio.create_task(self._pump(client_reader, target_writer)),
            asyncio.create_task(self._pump(target_reader, client_writer)),
        ]
        try:
            await asyncio.gather(*pumps)
        except OSError:
            pass  # a reset on one side ends the connection on the other
        except asyncio.CancelledError:
            pass  # the proxy is stopping: the connection ends with it
        finally:
            for task in pumps:
                task.cancel()
            for writer in (client_writer, target_writer):
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read into a bounded queue stamped with when each chunk is due; write each when it is due."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUED_CHUNKS)
        loop = asyncio.get_running_loop()

        def due_time() -> float:
            return loop.time() + self.delay_ms / 1e3

        async def read() -> None:
            try:
                while chunk := await reader.read(CHUNK_BYTES):
                    await queue.put((due_time(), chunk))
            except OSError:
                pass  # a reset ends this direction as an end of stream would
            await queue.put((due_time(), b""))

        reading = asyncio.create_task(read())
        try:
            while True:
                due, chunk = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not chunk:
                    if writer.can_write_eof():
                        writer.write_eof()
                    break
                writer.write(chunk)
                await writer.drain()
            await reading
        finally:
            reading.cancel()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer ``delay`` / ``delay <ms>`` lines, one answer line each."""
        try:
            while line := await reader.readline():
                writer.write((self.command(line.decode(errors="replace").strip()) + "\n").encode())
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def command(self, line: str) -> str:
        words = line.split()
        if not words or words[0] != "delay" or len(words) > 2:
            return f"error unknown command {line[:80]!r}: send `delay` or `delay <ms>`"
        if len(words) == 2:
            try:
                self.delay_ms = parse_delay_ms(words[1])
            except ValueError as exc:
                return f"error {exc}"
        return f"ok {self.delay_ms:g}"


async def serve(listen: tuple[str, int], control: tuple[str, int], proxy: DelayProxy) -> None:
    """Serve the proxy and its control port until SIGTERM or SIGINT."""
    forwarding = await asyncio.start_server(proxy.connection, *listen, reuse_address=True)
    controlling = await asyncio.start_server(proxy.control, *control, reuse_address=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    async with forwarding, controlling:
        await stopped.wait()


def send_control(control: str, line: str, timeout_s: float = CONTROL_TIMEOUT_S) -> float:
    """Send one control line to the proxy at ``control`` (host:port); the delay in ms it then has."""
    with socket.create_connection(split_address(control), timeout=timeout_s) as connection:
        connection.sendall(line.encode() + b"\n")
        answer = connection.makefile("r").readline().strip()
    status, _, value = answer.partition(" ")
    if status != "ok":
        raise ValueError(f"the delay proxy at {control} refused {line!r}: {value or answer or 'no answer'}")
    return float(value)


@dataclass
class ProxyProcess:
    """A delay proxy running as its own process (``command_prefix`` e.g. ``ip netns exec NS``)."""

    process: subprocess.Popen[bytes]
    control: str
    log_path: Path

    @classmethod
    def start(
        cls,
        listen: str,
        target: str,
        control: str,
        delay_ms: float,
        log_path: Path,
        command_prefix: tuple[str, ...] = (),
    ) -> ProxyProcess:
        """Start it and wait until its control port answers (stopping it if it does not in time)."""
        command = [*command_prefix, sys.executable, "-m", "splitexit.delay_proxy"]
        command += ["--listen", listen, "--target", target, "--control", control, "--delay-ms", f"{delay_ms:g}"]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            running = cls(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), control, log_path)
        try:
            running.wait_ready()
        except BaseException:
            running.stop()
            raise
        return running

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the delay proxy exited at start:\n{self.log_path.read_text()[-2000:]}")
            try:
                self.delay_ms()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"the delay proxy did not answer on {self.control} within {READY_TIMEOUT_S:.0f} s")

    def delay_ms(self) -> float:
        return send_control(self.control, "delay")

    def set_delay(self, delay_ms: float) -> float:
        """Set the one-way delay; the proxy's confirmed value."""
        return send_control(self.control, f"delay {delay_ms:g}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m splitexit.delay_proxy", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", required=True, help="host:port to accept connections on")
    parser.add_argument("--target", required=True, help="host:port each connection is forwarded to")
    parser.add_argument("--control", required=True, help="host:port of the control port (`delay <ms>` lines)")
    parser.add_argument("--delay-ms", default="0", help="one-way delay in ms, each direction (default 0)")
    args = parser.parse_args(argv)
    try:
        listen, target, control = (split_address(a) for a in (args.listen, args.target, args.control))
        delay_ms = parse_delay_ms(args.delay_ms)
    except ValueError as exc:
        sys.exit(f"delay proxy: {exc}")
    try:
        asyncio.run(serve(listen, control, DelayProxy(target, delay_ms)))
    except OSError as exc:
        sys.exit(f"delay proxy: {exc}")


if __name__ == "__main__":
    main()
