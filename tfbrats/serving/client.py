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
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from tfbrats.contract import PostProcessing, SegmentationContract, finish_segmentation, postprocess
from tfbrats.inference.predict import window_probabilities
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
    """The server refused a request or could not be reached; the message says which and why."""


class PredictClient(Protocol):
    """Anything that runs one Predict request and returns the named outputs as numpy arrays."""

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
        timeout: seconds to wait for one response.

    Example:
        >>> with GrpcPredictClient("localhost:8500", "albunet3d") as client:  # doctest: +SKIP
        ...     labels = client.predict("segment", {"volume": image}, "labels")
    """

    def __init__(self, server: str, model_name: str, version: int | None = None, timeout: float = 600.0):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.server = server
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
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
            raise ServingError(
                f"gRPC Predict on {self.server} (model {self.model_name!r}, signature {signature!r}) failed: "
                f"{error.code().name}: {error.details()}"
            ) from error
        missing = [name for name in outputs if name not in response.outputs]
        if missing:
            raise ServingError(f"{self.server} answered outputs {sorted(response.outputs)}, not {missing}")
        return {name: tf.make_ndarray(response.outputs[name]) for name in outputs}

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
        timeout: seconds to wait for one response.

    Example:
        >>> client = RestPredictClient("localhost:8501", "albunet3d")  # doctest: +SKIP
        >>> probabilities = client.predict("serving_default", {"image": windows}, "probabilities")  # doctest: +SKIP
    """

    def __init__(self, server: str, model_name: str, version: int | None = None, timeout: float = 600.0):
        base = server if server.startswith(("http://", "https://")) else f"http://{server}"
        versioned = f"/versions/{version}" if version is not None else ""
        self.url = f"{base.rstrip('/')}/v1/models/{model_name}{versioned}:predict"
        self.timeout = timeout

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray], output: str) -> np.ndarray:
        """Posts `{"signature_name", "inputs"}` and returns `output` from the response's "outputs"."""
        return self.predict_outputs(signature, inputs, [output])[output]

    def predict_outputs(self, signature: str, inputs: Mapping[str, np.ndarray],
                        outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Posts `{"signature_name", "inputs"}` and returns the named `outputs` of the response."""
        body = {"signature_name": signature, "inputs": {name: np.asarray(v).tolist() for name, v in inputs.items()}}
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as error:
            raise ServingError(f"POST {self.url} (signature {signature!r}) failed: HTTP {error.code}: "
                               f"{_error_message(error.read())}") from error
        except urllib.error.URLError as error:
            raise ServingError(f"cannot reach {self.url}: {error.reason}") from error
        if "outputs" not in payload:
            raise ServingError(f"POST {self.url} answered without 'outputs': keys {sorted(payload)}")
        answered = payload["outputs"]
        # TensorFlow Serving leaves the name out when a signature has a single output.
        if not isinstance(answered, dict):
            if len(outputs) != 1:
                raise ServingError(f"POST {self.url} answered a single unnamed output; expected {list(outputs)}")
            return {outputs[0]: np.asarray(answered)}
        missing = [name for name in outputs if name not in answered]
        if missing:
            raise ServingError(f"POST {self.url} answered outputs {sorted(answered)}, not {missing}")
        return {name: np.asarray(answered[name]) for name in outputs}


def segment_volume(
    client: PredictClient,
    image: np.ndarray,
    signature: str = SEGMENT,
    contract: SegmentationContract | None = None,
) -> np.ndarray:
    """Internal labels `(D, H, W)` of a preprocessed image `(D, H, W, C)` from a served tfbrats model.

    Args:
        client: A `GrpcPredictClient` or `RestPredictClient`.
        image: float32 `(D, H, W, C)` as `tfbrats.data.load_case` makes it.
        signature: "segment" (one request: the server runs the window and the contract's in-graph
            steps; the steps it returns as `client_postprocessing` run here) or "serving_default"
            (the whole contract runs here, one request per window batch: `contract` is needed).
        contract: The model's contract (`tfbrats.serving.export.read_metadata(folder)["contract"]`
            through `SegmentationContract.from_json`), for "serving_default".

    Returns:
        uint8 internal labels 0..3, as `python -m tfbrats.predict` computes them.

    Example:
        >>> labels = segment_volume(GrpcPredictClient("localhost:8500", "albunet3d"), case.image)  # doctest: +SKIP
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 4:
        raise ValueError(f"segment_volume needs an image (D, H, W, C); got shape {image.shape}")
    if signature == SEGMENT:
        answer = client.predict_outputs(SEGMENT, {VOLUME_INPUT: image}, [LABELS_OUTPUT, CLIENT_POSTPROCESSING_OUTPUT])
        labels = answer[LABELS_OUTPUT]
        steps = PostProcessing.from_integers(np.ravel(answer[CLIENT_POSTPROCESSING_OUTPUT]))
        labels = postprocess(np.asarray(labels, np.uint8), image, steps)
    elif signature == SERVING_DEFAULT:
        if contract is None:
            raise ValueError("the serving_default signature returns window probabilities: give the model's contract "
                             "(read_metadata(export)['contract']) so the window and post-processing run here")

        def remote(windows: np.ndarray) -> np.ndarray:
            return client.predict(SERVING_DEFAULT, {IMAGE_INPUT: windows}, PROBABILITIES_OUTPUT)

        labels = finish_segmentation(window_probabilities(image, remote, contract), image, contract)
    else:
        raise ValueError(f"signature must be {SEGMENT!r} or {SERVING_DEFAULT!r}; got {signature!r}")
    if labels.shape != image.shape[:3]:
        raise ServingError(f"the server returned labels of shape {labels.shape} for an image of shape {image.shape}")
    return labels.astype(np.uint8)


def _error_message(body: bytes) -> str:
    """TensorFlow Serving's `{"error": ...}` message, or the body as text."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:500]
