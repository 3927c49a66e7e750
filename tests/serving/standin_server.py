"""A STAND-IN for TensorFlow Serving, for tests only: no `tensorflow_model_server` can be installed here.

It loads an exported SavedModel with `tf.saved_model.load` and answers the two Predict APIs the
real server offers, as TensorFlow Serving documents them:

- gRPC: `tensorflow.serving.PredictionService/Predict` through tensorflow-serving-api's
  `PredictionServiceServicer` (model_spec name/version/signature_name, `inputs` TensorProtos,
  `output_filter`), with TensorFlow Serving's 2 GiB message limit;
- REST: `POST /v1/models/<name>[/versions/<v>]:predict` with `{"signature_name", "inputs"}` in the
  columnar format the client uses, answered as `{"outputs": ...}` (a single output without its
  name), errors as `{"error": message}` with an HTTP error status.

It serves one model version and nothing else (no row "instances" format, model status, metadata,
classify, regress, batching or version policy). It is not a server to deploy.
"""

from __future__ import annotations

import json
import re
import threading
from concurrent import futures
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

DEFAULT_SIGNATURE = "serving_default"
MAX_MESSAGE = 2**31 - 1  # what tensorflow_model_server allows
PREDICT_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?:predict$")


class RequestError(Exception):
    """A request the real server would refuse; carries the gRPC code and the HTTP status."""

    def __init__(self, message: str, code: grpc.StatusCode, status: HTTPStatus):
        super().__init__(message)
        self.code = code
        self.status = status


class StandInModel:
    """One loaded SavedModel version and the checks TensorFlow Serving makes before running it."""

    def __init__(self, version_dir: str | Path, name: str):
        self.name = name
        self.version = int(Path(version_dir).name)
        self.signatures = tf.saved_model.load(str(version_dir)).signatures

    def run(
        self, name: str, version: int | None, signature: str, inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Runs `signature` on `inputs` after checking model name, version, signature and input names."""
        if name != self.name or version not in (None, self.version):
            raise RequestError(f"Servable not found for request: {name} version {version}",
                               grpc.StatusCode.NOT_FOUND, HTTPStatus.NOT_FOUND)
        if signature not in self.signatures:
            raise RequestError(f"Serving signature name: \"{signature}\" not found in signature def",
                               grpc.StatusCode.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST)
        function = self.signatures[signature]
        specs = function.structured_input_signature[1]
        if set(inputs) != set(specs):
            raise RequestError(f"signature {signature} takes inputs {sorted(specs)}; got {sorted(inputs)}",
                               grpc.StatusCode.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST)
        tensors = {k: tf.constant(np.asarray(v, dtype=specs[k].dtype.as_numpy_dtype)) for k, v in inputs.items()}
        try:
            outputs = function(**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise RequestError(str(error), grpc.StatusCode.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST) from error
        return {k: v.numpy() for k, v in outputs.items()}

    def input_names(self, signature: str) -> list[str]:
        """The signature's input names (empty when it does not exist; `run` reports that)."""
        if signature not in self.signatures:
            return []
        return sorted(self.signatures[signature].structured_input_signature[1])


class StandInPredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """The gRPC Predict method of TensorFlow Serving over a `StandInModel`."""

    def __init__(self, model: StandInModel):
        self.model = model

    def Predict(  # noqa: N802  (the gRPC method's name)
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        signature = spec.signature_name or DEFAULT_SIGNATURE
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        try:
            outputs = self.model.run(spec.name, version, signature, inputs)
        except RequestError as error:
            context.abort(error.code, str(error))
        wanted = list(request.output_filter) or sorted(outputs)
        unknown = sorted(set(wanted) - set(outputs))
        if unknown:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"output_filter names unknown outputs {unknown}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model.name
        response.model_spec.version.value = self.model.version
        response.model_spec.signature_name = signature
        for name in wanted:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return response


def start_grpc(model: StandInModel) -> tuple[grpc.Server, int]:
    """Starts the gRPC stand-in on 127.0.0.1 at a free port; returns the server and the port."""
    options = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(StandInPredictionService(model), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def _rest_predict(model: StandInModel, name: str, version: int | None, body: dict[str, Any]) -> dict[str, Any]:
    """The REST predict call in the columnar format: "inputs" in, "outputs" out."""
    signature = body.get("signature_name", DEFAULT_SIGNATURE)
    if "inputs" not in body:
        raise RequestError("the stand-in answers the columnar format only: send an 'inputs' key",
                           grpc.StatusCode.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST)
    inputs = body["inputs"]
    if not isinstance(inputs, dict):
        # One unnamed tensor is allowed when the signature has a single input.
        names = model.input_names(signature)
        inputs = {names[0] if len(names) == 1 else "": inputs}
    outputs = {k: v.tolist() for k, v in model.run(name, version, signature, inputs).items()}
    return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}


def start_rest(model: StandInModel) -> tuple[ThreadingHTTPServer, int]:
    """Starts the REST stand-in on 127.0.0.1 at a free port, in a daemon thread; returns server and port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            match = PREDICT_PATH.match(self.path)
            try:
                if match is None:
                    raise RequestError(f"Malformed request: POST {self.path}",
                                       grpc.StatusCode.NOT_FOUND, HTTPStatus.NOT_FOUND)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                version = int(match["version"]) if match["version"] else None
                status, answer = HTTPStatus.OK, _rest_predict(model, match["name"], version, body)
            except json.JSONDecodeError as error:
                status, answer = HTTPStatus.BAD_REQUEST, {"error": f"JSON Parse error: {error}"}
            except RequestError as error:
                status, answer = error.status, {"error": str(error)}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: the tests read answers, not access logs."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]
