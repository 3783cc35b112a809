"""Messages between the driver and its workers over a stream socket.

A message is a pickled Python object (protocol 5); large buffers in it (bytes, numpy arrays)
travel out of band, as separate frames received straight into their own buffers, so a 100 MiB
array is neither copied into the pickle stream nor concatenated with it.

Frame: 8-byte count N of buffers, then N+1 8-byte lengths (pickle stream, then each buffer),
then the pickle stream and the buffers.
"""

from __future__ import annotations

import contextlib
import pickle
import socket
import struct
import threading
from typing import Any

import cloudpickle

_COUNT = struct.Struct("!Q")
_MIN_OUT_OF_BAND = 64 * 1024  # smaller buffers are cheaper inline


class Connection:
    """One end of a driver-worker socket; sends are serialized, receives are single-reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()

    def send(self, message: Any) -> None:
        stream, buffers = dumps(message)
        header = _COUNT.pack(len(buffers))
        lengths = struct.pack(f"!{len(buffers) + 1}Q", len(stream), *(b.nbytes for b in buffers))
        with self._send_lock:
            self.sock.sendall(header + lengths)
            self.sock.sendall(stream)
            for buffer in buffers:
                self.sock.sendall(buffer)

    def receive(self) -> Any:
        """The next message; raises EOFError when the other end is gone."""
        (count,) = _COUNT.unpack(self._exactly(_COUNT.size))
        lengths = struct.unpack(f"!{count + 1}Q", self._exactly(8 * (count + 1)))
        stream = self._exactly(lengths[0])
        buffers = [self._exactly(length) for length in lengths[1:]]
        return pickle.loads(stream, buffers=buffers)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _exactly(self, size: int) -> bytearray:
        data = bytearray(size)
        view = memoryview(data)
        received = 0
        while received < size:
            count = self.sock.recv_into(view[received:], size - received)
            if count == 0:
                raise EOFError("connection closed")
            received += count
        return data


def dumps(value: Any) -> tuple[bytes, list[memoryview]]:
    """Pickle ``value`` (cloudpickle: functions and classes by value), large buffers apart."""
    buffers: list[memoryview] = []

    def keep_large(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.nbytes < _MIN_OUT_OF_BAND:
            return True  # serialize in band
        buffers.append(view)
        return False

    stream = cloudpickle.dumps(value, protocol=5, buffer_callback=keep_large)
    return stream, buffers


def loads(stream: bytes, buffers: list[Any]) -> Any:
    return pickle.loads(stream, buffers=buffers)
