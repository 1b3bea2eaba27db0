"""Reading a device's port all the time, between commands too (DESIGN §9).

A `PortReader` wraps the device's transport and is a transport itself: one thread of its own
reads the port in short slices and hands every chunk to `on_rx` (the device's live stream) and
to a buffer the exchange takes replies from. A command's reply therefore costs one hand-off
between threads, not a poll: the exchange blocks on the buffer's condition and wakes with the
chunk.

What arrives while the port is clean and no command is out is only streamed: `discard_idle`
drops it from the buffer until the next write, so it can never be taken for the next answer.
A port that may still owe a reply (after a timeout, or on opening) keeps its bytes until the
exchange has drained them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from tasks.errors import DeviceError
from worker_host.transport import IDLE_READ_SLICE_S, READ_SLICE_S, Transport

log = logging.getLogger("hwq.device")

# Bytes kept for the exchange while the port owes a reply and no command drains it; past this
# the oldest go (they are on the stream). Far beyond any reply hwq reads (MAX_READ_BYTES).
MAX_BUFFERED_BYTES = 4 * 1024 * 1024
# How often the reader looks again while the port is closed.
CLOSED_POLL_S = 0.5

@runtime_checkable
class SlicedReads(Protocol):
    """A transport that can wait one read slice without reconfiguring its port."""

    def read_slice(self) -> bytes:
        """Wait at most one read slice for at least one byte."""
        ...


ChunkSink = Callable[[bytes], None]
# Told "online" once the port opens, "port-missing" when a read fails, "offline" on close.
PresenceSink = Callable[[str], None]


class PortReader:
    """A transport whose port a thread of its own reads all the time."""

    def __init__(
        self,
        transport: Transport,
        on_rx: ChunkSink,
        on_presence: PresenceSink | None = None,
        name: str = "hwq-port-reader",
    ) -> None:
        self.transport = transport
        self.url = transport.url
        self._on_rx = on_rx
        self._on_presence = on_presence or (lambda _presence: None)
        # Held by the reader for each read slice, and by open and close: the port is never
        # closed, or opened again, under a read.
        self._port_lock = threading.Lock()
        self._ready = threading.Condition()
        self._buffer = bytearray()
        self._discarding = False
        self._error: DeviceError | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # Transport ----------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True while the port is open and no read has failed."""
        return self.transport.is_open and self._error is None

    def open(self) -> None:
        """Open the port if it is not open; what the reader reads from now on is kept."""
        if self.is_open:
            return
        with self._port_lock:
            self.transport.close()
            self.transport.open()
        with self._ready:
            self._buffer.clear()
            self._error = None
            self._discarding = False
            self._ready.notify_all()
        self._on_presence("online")

    def close(self) -> None:
        """Close the port; the reader waits until it is opened again."""
        # The reader holds the lock for a read slice: cut it short rather than wait it out.
        cancel = getattr(self.transport, "cancel_read", None)
        if callable(cancel):
            cancel()
        with self._port_lock:
            was_open = self.transport.is_open
            self.transport.close()
        with self._ready:
            self._buffer.clear()
            self._ready.notify_all()
        if was_open:
            self._on_presence("offline")

    def write(self, data: bytes) -> None:
        """Send all of data; only bytes read after it can be its reply."""
        self._raise_if_failed()
        with self._ready:
            self._buffer.clear()
            self._discarding = False
        try:
            self.transport.write(data)
        except DeviceError:
            self.close()
            raise

    def read_some(self, timeout: float) -> bytes:
        """Wait up to timeout seconds for bytes the reader has read; b"" if none came."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._ready:
            self._discarding = False
            while not self._buffer:
                self._raise_if_failed()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return b""
                self._ready.wait(remaining)
            chunk = bytes(self._buffer)
            self._buffer.clear()
            return chunk

    def drain(self) -> bytes:
        """The bytes the reader has read and nobody has taken, without blocking."""
        with self._ready:
            self._raise_if_failed()
            chunk = bytes(self._buffer)
            self._buffer.clear()
            return chunk

    # the exchange's hints -----------------------------------------------------------------
    def discard_idle(self) -> None:
        """The port is clean and no command is out: drop what arrives until the next write."""
        with self._ready:
            self._buffer.clear()
            self._discarding = True

    def stop(self) -> None:
        """Close the port and end the reader thread."""
        self._stopping = True
        self.close()
        with self._ready:
            self._ready.notify_all()
        self._thread.join(IDLE_READ_SLICE_S * 5)

    # the reader thread --------------------------------------------------------------------
    def _raise_if_failed(self) -> None:
        error = self._error
        if error is not None:
            raise DeviceError(str(error))

    def _run(self) -> None:
        while not self._stopping:
            try:
                chunk = self._read_slice()
            except DeviceError as e:
                # The transport closed itself; the exchange sees the error on its next read
                # and the next command opens the port again.
                with self._ready:
                    self._error = e
                    self._ready.notify_all()
                log.warning("port read failed", extra={"port": self.url, "error": str(e)})
                self._on_presence("port-missing")
                continue
            except Exception:  # a bug must not leave the port unread for the worker's life
                log.exception("port reader failed; it reads on", extra={"port": self.url})
                time.sleep(CLOSED_POLL_S)
                continue
            if chunk is None:
                with self._ready:
                    # open() and stop() wake it at once.
                    self._ready.wait(CLOSED_POLL_S)
            elif chunk:
                self._take(chunk)

    def _read_slice(self) -> bytes | None:
        """One slice of reading; None while the port is closed or has failed."""
        with self._port_lock:
            if not self.transport.is_open or self._error is not None:
                return None
            if isinstance(self.transport, SlicedReads):
                return self.transport.read_slice()
            return self.transport.read_some(READ_SLICE_S)

    def _take(self, chunk: bytes) -> None:
        # Streamed first: an observer sees the bytes no later than the command they answer.
        try:
            self._on_rx(chunk)
        except Exception:
            log.exception("rx chunk not streamed", extra={"port": self.url})
        with self._ready:
            if self._discarding:
                return
            self._buffer += chunk
            if len(self._buffer) > MAX_BUFFERED_BYTES:
                del self._buffer[: len(self._buffer) - MAX_BUFFERED_BYTES]
            self._ready.notify_all()
