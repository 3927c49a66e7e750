"""Segment one NIfTI case with a tfbrats model served by TensorFlow Serving.

    python tools/serving_client.py --server=localhost:8500 --grpc --case=data/BraTS20_Validation_001 \\
        --output=predictions/
    python tools/serving_client.py --server=localhost:8501 --rest --case=... --output=case.nii.gz

The case is read and preprocessed exactly as tfbrats does (`tfbrats.data.load_case`: FLAIR, T1c,
T2, z-scored over the brain, cropped to it), sent to the server, and the labels are put back in
the original grid and written with the input's affine and header and the dataset's own label
values (`tfbrats.data.write_labels_nifti`). --output is a `.nii.gz`/`.nii` file, or a folder that
gets `<case_id>.nii.gz`.

--signature=segment (default) sends the whole volume in one request: the server runs the sliding
window and the model's segmentation contract as far as the graph can, and this client applies the
post-processing steps the server names in its answer, so the labels are those of
`python -m tfbrats.predict`. --signature=serving_default runs the window and the whole contract
here and sends batches of patches (for a TF-TRT conversion, which keeps only that signature); it
needs --metadata, the export's version folder (or its assets.extra/tfbrats.json), for the
contract. A post-treatment model (BraTS 2024/2025, the resection cavity as label 4) needs
--metadata with either signature: the server's answer does not say which label set the model has,
so without it labels are 0..3 and an answer holding the cavity is refused with a message saying
so; with it the cavity is written with the case's own value (4 in BraTS 2024/2025).
gRPC (tensorflow-serving-api; port 8500 by default) sends binary tensors; REST (port 8501) sends
JSON text, about 5 times larger, and needs no TensorFlow on the client.

--timeout is the deadline of each request as a whole (connecting, sending, waiting and reading
the answer), not of each read. A request that fails or runs out of time, or an answer that is not
a segmentation (malformed JSON, missing outputs, labels that are not 0..3 on the case's grid,
probabilities that are NaN or outside [0, 1]), is one line on stderr naming the case, and exit
status 1 with nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def output_path(output: Path, case_id: str) -> Path:
    """`output` when it names a NIfTI file, else `output/<case_id>.nii.gz`."""
    return output if output.name.endswith((".nii.gz", ".nii")) else output / f"{case_id}.nii.gz"


def main(argv: list[str] | None = None) -> int:
    from tfbrats.serving.signatures import SEGMENT, SERVING_DEFAULT

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, help="host:port of tensorflow_model_server")
    transport = parser.add_mutually_exclusive_group(required=True)
    transport.add_argument("--grpc", action="store_true", help="gRPC Predict API (--port, 8500)")
    transport.add_argument("--rest", action="store_true", help="REST Predict API (--rest_api_port, 8501)")
    parser.add_argument("--case", required=True, type=Path, help="one case folder (BraTS file names)")
    parser.add_argument("--output", required=True, type=Path, help="output .nii.gz file or folder")
    parser.add_argument("--model_name", default="albunet3d", help="--model_name the server was started with")
    parser.add_argument("--model_version", type=int, help="a version to ask for (default: the server's latest)")
    parser.add_argument("--signature", choices=(SEGMENT, SERVING_DEFAULT), default=SEGMENT)
    parser.add_argument("--input_channels", type=int, choices=(3, 4), default=3, help="the model's input channels")
    parser.add_argument("--metadata", type=Path, help="the export's version folder or its tfbrats.json "
                        "(--signature=serving_default: the contract to apply here)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one request may take in all, from connecting to the answer's last byte")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error(f"--timeout must be a positive number of seconds; got {args.timeout}")
    if args.signature == SERVING_DEFAULT and args.metadata is None:
        parser.error("--signature=serving_default needs --metadata (the export's folder) for the contract")

    from tfbrats.contract import SegmentationContract
    from tfbrats.data import CaseError, find_cases, load_case, uncrop, write_labels_nifti
    from tfbrats.serving.client import GrpcPredictClient, RestPredictClient, ServingError, segment_volume

    contract = None
    if args.metadata is not None:
        metadata_file = args.metadata if args.metadata.is_file() else args.metadata / "assets.extra" / "tfbrats.json"
        contract = SegmentationContract.from_json(json.loads(metadata_file.read_text())["contract"])
    try:
        cases = find_cases(args.case).cases
        if len(cases) != 1:
            parser.error(f"--case must be one case folder; {args.case} holds {len(cases)} cases")
        channels = len(contract.channels) if contract else args.input_channels
        case = load_case(cases[0], channels)
    except (CaseError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    client_type = GrpcPredictClient if args.grpc else RestPredictClient
    client = client_type(args.server, args.model_name, args.model_version, args.timeout)
    try:
        labels = segment_volume(client, case.image, args.signature, contract)
    except ServingError as error:
        print(f"error: case {case.meta.case_id}: {error}", file=sys.stderr)
        return 1
    written = write_labels_nifti(uncrop(labels, case.meta), case.meta, output_path(args.output, case.meta.case_id))
    print(f"wrote {written}: case {case.meta.case_id}, image {case.image.shape} via {args.signature} "
          f"on {'gRPC' if args.grpc else 'REST'} {args.server}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
