"""Deployment: SavedModel/ONNX export, the in-graph sliding window, TensorFlow Serving clients.

Importing this package is cheap; its modules load what they need:

- `tfbrats.serving.signatures`: signature, input and output names shared by server and client;
- `tfbrats.serving.window`: `sliding_window_graph`, the sliding window in TensorFlow ops;
- `tfbrats.serving.export`: `export_saved_model`, `export_onnx`, `read_metadata`;
- `tfbrats.serving.client`: `GrpcPredictClient`, `RestPredictClient`, `segment_volume`.

Example:
    >>> from tfbrats.inference.predict import load_model  # doctest: +SKIP
    >>> from tfbrats.serving.export import export_saved_model  # doctest: +SKIP
    >>> loaded = load_model("runs/3d")  # doctest: +SKIP
    >>> export_saved_model(loaded.model, "saved_models/albunet3d", 1, loaded.patch_size)  # doctest: +SKIP
"""
