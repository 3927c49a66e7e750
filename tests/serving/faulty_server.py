"""Servers that misbehave on purpose, for tests of what a client makes of bad answers and slow servers.

- `ScriptedRestServer`: a real HTTP server on 127.0.0.1 (a thread) that answers every POST with
  the same bytes: any status and body (malformed JSON, a bare number, wrong outputs), optionally
  sent a byte at a time with a pause after each (headers too), or never (a stalled server).
- `start_stalled_grpc`: a gRPC PredictionService whose Predict never answers.

Neither imports TensorFlow until a gRPC server is started.
"""

from __future__ import annotations

import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedRestServer:
    """An HTTP server answering every POST with `body`, whole or a byte per `byte_pause` seconds.

    Args:
        body: The answer's body (bytes), or any JSON value (serialised as Python's `json` does:
            NaN as ``NaN``, as TensorFlow Serving writes it).
        status: The HTTP status.
        byte_pause: Seconds to wait after each byte of the answer, status line and headers
            included; 0 sends the answer at once.
        stall: Read the request and never answer (until the server is closed).

    Example:
        >>> with ScriptedRestServer(b"not json") as server:  # doctest: +SKIP
        ...     RestPredictClient(server.address, "m").predict("segment", {}, "labels")
    """

    def __init__(self, body: Any, status: int = 200, byte_pause: float = 0.0, stall: bool = False):
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.status, self.byte_pause, self.stall = status, byte_pause, stall
        self.closing = threading.Event()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if scripted.stall:
                    scripted.closing.wait(120)
                    return
                answer = (f"HTTP/1.1 {scripted.status} Scripted\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(scripted.body)}\r\nConnection: close\r\n\r\n").encode() + scripted.body
                try:
                    if not scripted.byte_pause:
                        self.wfile.write(answer)
                        return
                    for index in range(len(answer)):
                        self.wfile.write(answer[index : index + 1])
                        if scripted.closing.wait(scripted.byte_pause):
                            return
                except OSError:
                    pass  # the client hung up

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> ScriptedRestServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_stalled_grpc() -> tuple[Any, int, threading.Event]:
    """A gRPC Predict on 127.0.0.1 that never answers; returns (server, port, event that releases it)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    release = threading.Event()

    class Stalled(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802  (the gRPC method's name)
            release.wait(120)
            context.abort(grpc.StatusCode.UNAVAILABLE, "released")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Stalled(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, release
