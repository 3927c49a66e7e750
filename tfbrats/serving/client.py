"""Clients of TensorFlow Serving's Predict API, and whole-volume segmentation through a server.

Both clients answer `predict(signature, inputs, output) -> numpy array`:

- `GrpcPredictClient` speaks `tensorflow.serving.PredictionService/Predict` with
  tensorflow-serving-api's `PredictionServiceStub`: tensors travel as binary `TensorProto`s (4 bytes
  a voxel), so it is the transport for whole volumes. It imports TensorFlow (the protos need it).
- `RestPredictClient` posts JSON to `POST /v1/models/<name>[/versions/<v>]:predict` in the
  columnar format `{"signature_name": ..., "inputs": {name: nested lists}}` and reads `"outputs"`,
  as TensorFlow Serving documents it; it needs only the standard library and numpy, but a volume
  costs about 20 bytes a number as text.

`segment_volume` sends a preprocessed volume to the `segment` signature (the server runs the
sliding window and the contract's steps it can) and applies the steps the server leaves to it,
or runs the whole contract here (`tfbrats.inference.predict.window_probabilities` and
`tfbrats.contract.finish_segmentation`) with the server's `serving_default` as the predictor (for a
server that has only that signature, e.g. a TF-TRT conversion). Either way the labels are those
`python -m tfbrats.predict` writes.

A client's `timeout` is the deadline of each request as a whole: connecting, sending, waiting and
reading the answer. Whatever goes wrong with a request or its answer (refused, unreachable, too
late, not JSON, missing or malformed outputs, probabilities or labels the contract refuses) raises
`ServingError`, one line that names the server and what was expected.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from tfbrats.contract import (
    INTERNAL_LABELS,
    ContractError,
    OutputError,
    PostProcessing,
    SegmentationContract,
    check_labels,
    finish_segmentation,
    postprocess,
)
from tfbrats.inference.predict import window_probabilities
from tfbrats.labels import BRATS_POST_TREATMENT, RC_CLASS
from tfbrats.serving.signatures import (
    CLIENT_POSTPROCESSING_OUTPUT,
    IMAGE_INPUT,
    LABELS_OUTPUT,
    PROBABILITIES_OUTPUT,
    SEGMENT,
    SERVING_DEFAULT,
    VOLUME_INPUT,
)

# TensorFlow Serving accepts messages up to 2 GiB; gRPC clients stop at 4 MiB unless told otherwise.
GRPC_MESSAGE_OPTIONS = (("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1))


class ServingError(RuntimeError):
    """A request failed or its answer cannot be used (refused, unreachable, too late, malformed); one line says why."""


class PredictClient(Protocol):
    """Anything that runs one Predict request and returns the named outputs as numpy arrays."""

    endpoint: str

    def predict_outputs(self, signature: str, inputs: Mapping[str, np.ndarray],
                        outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Runs `signature` on `inputs` and returns the outputs named in `outputs`."""

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray], output: str) -> np.ndarray:
        """Runs `signature` on `inputs` and returns its output `output`."""


class GrpcPredictClient:
    """TensorFlow Serving's gRPC Predict API (default port 8500).

    Args:
        server: "host:port".
        model_name: the served model's name (`--model_name` of `tensorflow_model_server`).
        version: a model version; None lets the server take its latest.
        timeout: seconds one request may take in all (gRPC's deadline).

    Example:
        With a server, ``client.predict("segment", {"volume": image}, "labels")`` returns the labels;
        without one the request fails at once with the server's answer:

        >>> with GrpcPredictClient("127.0.0.1:1", "albunet3d") as client:  # nothing listens on port 1
        ...     client.predict("segment", {"volume": np.zeros((8, 32, 32, 3), np.float32)}, "labels")
        ...     # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.serving.client.ServingError: gRPC Predict on 127.0.0.1:1 (model 'albunet3d', signature 'segment') ...
    """

    def __init__(self, server: str, model_name: str, version: int | None = None, timeout: float = 600.0):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.server = server
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.endpoint = f"gRPC {server} (model {model_name!r})"
        self._channel = grpc.insecure_channel(server, options=list(GRPC_MESSAGE_OPTIONS))
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray], output: str) -> np.ndarray:
        """Sends one PredictRequest, asking for `output` alone, and returns it."""
        return self.predict_outputs(signature, inputs, [output])[output]

    def predict_outputs(self, signature: str, inputs: Mapping[str, np.ndarray],
                        outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Sends one PredictRequest, asking for `outputs` (its output_filter), and returns them."""
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature
        if self.version is not None:
            request.model_spec.version.value = self.version
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        request.output_filter.extend(outputs)
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServingError(_too_late(self.endpoint, signature, self.timeout)) from None
            raise ServingError(
                f"gRPC Predict on {self.server} (model {self.model_name!r}, signature {signature!r}) failed: "
                f"{error.code().name}: {_one_line(error.details())}"
            ) from error
        missing = [name for name in outputs if name not in response.outputs]
        if missing:
            raise ServingError(f"{self.server} answered outputs {sorted(response.outputs)}, not {missing}")
        answered = {}
        for name in outputs:
            try:
                answered[name] = tf.make_ndarray(response.outputs[name])
            except (TypeError, ValueError) as error:
                raise ServingError(f"{self.endpoint} answered an unreadable tensor {name!r}: {error}") from None
        return {name: _numbers(self.endpoint, name, value) for name, value in answered.items()}

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> GrpcPredictClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RestPredictClient:
    """TensorFlow Serving's REST Predict API (default port 8501), columnar JSON format.

    Args:
        server: "host:port" (or a full "http(s)://host:port" base URL).
        model_name: the served model's name.
        version: a model version; None lets the server take its latest.
        timeout: seconds one request may take in all, from connecting to the answer's last byte
            (a server that answers a byte at a time cannot hold the client past it).

    Example:
        With a server, ``client.predict("serving_default", {"image": windows}, "probabilities")``
        returns the windows' probabilities; without one the request fails at once:

        >>> client = RestPredictClient("127.0.0.1:1", "albunet3d")  # nothing listens on port 1
        >>> client.predict("serving_default", {"image": np.zeros((1, 8, 32, 32, 3), np.float32)}, "probabilities")
        ...     # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.serving.client.ServingError: cannot reach http://127.0.0.1:1/v1/models/albunet3d:predict: ...
    """

    def __init__(self, server: str, model_name: str, version: int | None = None, timeout: float = 600.0):
        base = server if server.startswith(("http://", "https://")) else f"http://{server}"
        versioned = f"/versions/{version}" if version is not None else ""
        self.url = f"{base.rstrip('/')}/v1/models/{model_name}{versioned}:predict"
        self.endpoint = f"POST {self.url}"
        self.timeout = timeout

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray], output: str) -> np.ndarray:
        """Posts `{"signature_name", "inputs"}` and returns `output` from the response's "outputs"."""
        return self.predict_outputs(signature, inputs, [output])[output]

    def predict_outputs(self, signature: str, inputs: Mapping[str, np.ndarray],
                        outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Posts `{"signature_name", "inputs"}` and returns the named `outputs` of the response."""
        body = {"signature_name": signature, "inputs": {name: np.asarray(v).tolist() for name, v in inputs.items()}}
        answer = self._post(json.dumps(body).encode(), signature)
        try:
            payload = json.loads(answer)
        except ValueError as error:
            raise ServingError(f"{self.endpoint} answered {len(answer)} bytes that are not JSON ({error}): "
                               f"{answer[:60]!r}; expected TensorFlow Serving's {{\"outputs\": ...}}") from None
        if not isinstance(payload, dict) or "outputs" not in payload:
            found = f"keys {sorted(payload)}" if isinstance(payload, dict) else f"a JSON {type(payload).__name__}"
            raise ServingError(f"{self.endpoint} answered {found}; expected an object with 'outputs'")
        answered = payload["outputs"]
        # TensorFlow Serving leaves the name out when a signature has a single output.
        if not isinstance(answered, dict):
            if len(outputs) != 1:
                raise ServingError(f"{self.endpoint} answered a single unnamed output; expected {list(outputs)}")
            return {outputs[0]: _numbers(self.endpoint, outputs[0], answered)}
        missing = [name for name in outputs if name not in answered]
        if missing:
            raise ServingError(f"{self.endpoint} answered outputs {sorted(answered)}, not {missing}")
        return {name: _numbers(self.endpoint, name, answered[name]) for name in outputs}

    def _post(self, body: bytes, signature: str) -> bytes:
        """The answer's body, read in full within the timeout."""
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"},
                                         method="POST")
        with _Deadline(self.timeout) as deadline:
            opener = urllib.request.build_opener(_HTTPHandler(deadline), _HTTPSHandler(deadline))
            try:
                with opener.open(request, timeout=self.timeout) as response:
                    answer = response.read()
            except urllib.error.HTTPError as error:
                message = _error_message(error.read())
                if deadline.expired:
                    raise ServingError(_too_late(self.endpoint, signature, self.timeout)) from None
                raise ServingError(f"{self.endpoint} (signature {signature!r}) failed: HTTP {error.code}: "
                                   f"{message}") from error
            except urllib.error.URLError as error:
                if deadline.expired or isinstance(error.reason, TimeoutError):
                    raise ServingError(_too_late(self.endpoint, signature, self.timeout)) from None
                raise ServingError(f"cannot reach {self.url}: {error.reason}") from error
            except (OSError, http.client.HTTPException) as error:
                # A socket timeout is one read waiting the whole timeout: the deadline has passed too.
                if deadline.expired or isinstance(error, TimeoutError):
                    raise ServingError(_too_late(self.endpoint, signature, self.timeout)) from None
                raise ServingError(f"{self.endpoint} (signature {signature!r}) broke off: "
                                   f"{type(error).__name__}: {error}") from error
        if deadline.expired:  # the connection was cut at the deadline: what was read is incomplete
            raise ServingError(_too_late(self.endpoint, signature, self.timeout))
        return answer


class _Deadline:
    """Shuts down the connections of one request when `seconds` have passed, whatever they are waiting for.

    A socket timeout bounds each read; a server sending a byte now and then never trips it. At the
    deadline every socket opened under this object is shut down, so a blocked read or write returns
    at once, and `expired` tells the caller why.
    """

    def __init__(self, seconds: float):
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for opened in self._sockets:
                _shut_down(opened)

    def opened(self, opened: socket.socket) -> None:
        """Puts a connected socket under the deadline (shut down at once when it has passed)."""
        with self._lock:
            self._sockets.append(opened)
            if self.expired:
                _shut_down(opened)

    def connection_class(self, base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
        """`base` whose connections put their sockets under this deadline."""
        deadline = self

        class Connection(base):
            def connect(self) -> None:
                super().connect()
                deadline.opened(self.sock)

        return Connection


def _shut_down(opened: socket.socket) -> None:
    try:
        # The plain socket's shutdown, also for TLS: it wakes a read blocked in another thread.
        socket.socket.shutdown(opened, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _DeadlineHandler:
    """A urllib HTTP(S) handler whose connections are under a `_Deadline` (proxies work as usual)."""

    def __init__(self, deadline: _Deadline, **kwargs: Any):
        super().__init__(**kwargs)
        self.deadline = deadline

    def do_open(self, http_class: type[http.client.HTTPConnection], request: urllib.request.Request,
                **kwargs: Any) -> http.client.HTTPResponse:
        return super().do_open(self.deadline.connection_class(http_class), request, **kwargs)


class _HTTPHandler(_DeadlineHandler, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_DeadlineHandler, urllib.request.HTTPSHandler):
    pass


def _too_late(endpoint: str, signature: str, timeout: float) -> str:
    return (f"{endpoint} (signature {signature!r}) gave no complete answer within the timeout of {timeout:g} s; "
            "the server is stalled or slow: check it, or allow more time (timeout, --timeout)")


def _one_line(text: str) -> str:
    """A server's message on one line (TensorFlow appends the failing graph node on further lines)."""
    return " ".join(str(text).split())


def _numbers(endpoint: str, name: str, value: Any) -> np.ndarray:
    """An answered output as a numeric array, or a `ServingError` saying what it was instead."""
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise ServingError(f"{endpoint} answered output {name!r} that is not an array ({error})") from None
    if array.dtype.kind not in "biuf":
        raise ServingError(f"{endpoint} answered output {name!r} of dtype {array.dtype} (e.g. {_example(array)}); "
                           "expected numbers")
    return array


def _example(array: np.ndarray) -> str:
    return repr(array.ravel()[0])[:40] if array.size else "empty"


def segment_volume(
    client: PredictClient,
    image: np.ndarray,
    signature: str = SEGMENT,
    contract: SegmentationContract | None = None,
) -> np.ndarray:
    """Internal labels `(D, H, W)` of a preprocessed image `(D, H, W, C)` from a served tfbrats model.

    What the server answers is checked before it becomes a label map: the labels' grid and values
    (`tfbrats.contract.check_labels`, within the contract's target when it is given), the steps it
    leaves to the client, and over "serving_default" the probabilities (shape, and
    `tfbrats.contract.check_probabilities` in `finish_segmentation`).

    Args:
        client: A `GrpcPredictClient` or `RestPredictClient`.
        image: float32 `(D, H, W, C)` as `tfbrats.data.load_case` makes it.
        signature: "segment" (one request: the server runs the window and the contract's in-graph
            steps; the steps it returns as `client_postprocessing` run here) or "serving_default"
            (the whole contract runs here, one request per window batch: `contract` is needed).
        contract: The model's contract (`tfbrats.serving.export.read_metadata(folder)["contract"]`
            through `SegmentationContract.from_json`), for "serving_default".

    Returns:
        uint8 internal labels, as `python -m tfbrats.predict` computes them: 0..3, or 0..4 with the
        resection cavity (4) for a post-treatment model. Without `contract` the client takes
        0..3; a `segment` answer holding the cavity is then an error asking for the contract (the
        signature's outputs do not say which label set the served model has).

    Raises:
        ServingError: A request failed, or its answer is not a segmentation of `image`.

    Example:
        >>> segment_volume(GrpcPredictClient("127.0.0.1:1", "albunet3d"), np.zeros((8, 32, 32, 3), np.float32))
        ...     # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.serving.client.ServingError: gRPC Predict on 127.0.0.1:1 (model 'albunet3d', ...: UNAVAILABLE: ...
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 4:
        raise ValueError(f"segment_volume needs an image (D, H, W, C); got shape {image.shape}")
    endpoint = getattr(client, "endpoint", "the server")
    try:
        if signature == SEGMENT:
            answer = client.predict_outputs(SEGMENT, {VOLUME_INPUT: image},
                                            [LABELS_OUTPUT, CLIENT_POSTPROCESSING_OUTPUT])
            labels = np.asarray(answer[LABELS_OUTPUT])
            if labels.shape != image.shape[:3]:
                raise ServingError(f"{endpoint} answered labels of shape {labels.shape} for an image of shape "
                                   f"{image.shape}; expected {image.shape[:3]}")
            steps = _client_steps(endpoint, answer[CLIENT_POSTPROCESSING_OUTPUT])
            if contract is None:
                _refuse_unknown_cavity(endpoint, labels)
            allowed = contract.target.labels if contract is not None else INTERNAL_LABELS
            return postprocess(check_labels(labels, allowed), image, steps, allowed=allowed)
        if signature == SERVING_DEFAULT:
            if contract is None:
                raise ValueError("the serving_default signature returns window probabilities: give the model's "
                                 "contract (read_metadata(export)['contract']) so the window and post-processing "
                                 "run here")
            outputs = contract.target.num_outputs

            def remote(windows: np.ndarray) -> np.ndarray:
                probabilities = client.predict(SERVING_DEFAULT, {IMAGE_INPUT: windows}, PROBABILITIES_OUTPUT)
                if probabilities.shape != windows.shape[:-1] + (outputs,):
                    raise ServingError(f"{endpoint} answered probabilities of shape {probabilities.shape} for "
                                       f"windows {windows.shape}; expected {windows.shape[:-1] + (outputs,)}")
                return probabilities

            return finish_segmentation(window_probabilities(image, remote, contract), image, contract)
    except OutputError as error:
        raise ServingError(f"{endpoint}: {error}") from None
    raise ValueError(f"signature must be {SEGMENT!r} or {SERVING_DEFAULT!r}; got {signature!r}")


def _refuse_unknown_cavity(endpoint: str, labels: np.ndarray) -> None:
    """A clear error for resection-cavity labels from a model whose contract the client was not given."""
    values = np.asarray(labels)
    if values.dtype.kind not in "biuf" or not np.isin(values, BRATS_POST_TREATMENT.labels).all():
        return  # not a post-treatment answer: check_labels names what is wrong with it
    cavity = np.count_nonzero(values == RC_CLASS)
    if cavity:
        raise ServingError(f"{endpoint} answered {cavity} voxels of label {RC_CLASS}, the resection cavity of a "
                           f"post-treatment model (label set {BRATS_POST_TREATMENT.name}, labels "
                           f"{list(BRATS_POST_TREATMENT.labels)}); without the model's contract the labels are "
                           f"{list(INTERNAL_LABELS)}: give it (segment_volume(contract=...), "
                           "tools/serving_client.py --metadata=<the export's version folder>)")


def _client_steps(endpoint: str, answered: np.ndarray) -> PostProcessing:
    """The post-processing a `segment` answer leaves to the client (`PostProcessing.to_integers`)."""
    try:
        return PostProcessing.from_integers(answered)
    except ContractError as error:
        raise ServingError(f"{endpoint} answered {CLIENT_POSTPROCESSING_OUTPUT}: {error}") from None


def _error_message(body: bytes) -> str:
    """TensorFlow Serving's `{"error": ...}` message, or the body as text, on one line."""
    try:
        return _one_line(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return _one_line(body.decode(errors="replace")[:500])
