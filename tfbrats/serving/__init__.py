"""Deployment: SavedModel/ONNX export, the in-graph sliding window, TensorFlow Serving clients.

Importing this package is cheap; its modules load what they need:

- `tfbrats.serving.signatures`: signature, input and output names shared by server and client;
- `tfbrats.serving.window`: `sliding_window_graph`, the sliding window in TensorFlow ops;
- `tfbrats.serving.export`: `export_saved_model`, `export_onnx`, `read_metadata`;
- `tfbrats.serving.client`: `GrpcPredictClient`, `RestPredictClient`, `segment_volume`.

An export is ``export_saved_model(loaded.model, "saved_models/albunet3d", 1, loaded.contract)``
with ``loaded = tfbrats.inference.model.load_model("runs/3d")`` (``python tools/export.py`` runs
it). Server and client agree on the names of `signatures`:

Example:
    >>> from tfbrats.serving import signatures
    >>> signatures.SEGMENT, signatures.VOLUME_INPUT, signatures.LABELS_OUTPUT
    ('segment', 'volume', 'labels')
"""
