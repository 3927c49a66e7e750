"""Whole-volume validation of a model during training: mean Dice per region, one pass per case.

It segments as prediction does (the model's segmentation contract, `tfbrats.inference`), so
`best.keras` is the model that segments the validation cases best. Training does not import it:
the command (`tfbrats.cli.train`) hands `score_volumes` to the trainer as its volume scorer.
"""

from __future__ import annotations

import weakref

# One compiled predictor per model: a traced function reads the weights' current values at each call.
_VOLUME_PREDICTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def score_volumes(model, cases: list) -> dict[str, float]:
    """Mean Dice per region (WT, TC, ET, and RC for a model with the cavity) on whole cropped cases, one pass each.

    The model's own segmentation contract turns probabilities into labels, as prediction does
    (`tfbrats.inference.predict.window_probabilities`, `tfbrats.contract.finish_segmentation`),
    with the window replaced by a single pass; Dice follows BraTS (1 when both are empty).
    The pass runs through `tfbrats.inference.model.make_predictor` (a traced function, compiled
    once per model and reused while its weights change), not eagerly: on a 123x201x184 case an
    eager pass of the demo's AlbuNet3D held 14 GB, the traced one 2.5 GB.

    Args:
        model: A tfbrats model (its ``segmentation`` attribute holds its contract's JSON), or any
            callable on window batches that carries one.
        cases: Cropped cases with ``image`` (D, H, W, C) and internal ``label`` (D, H, W), as
            `tfbrats.training.load_validation_cases` returns them.

    Example: a "model" that reads the labels off the image scores 1 in every region:

        >>> import types
        >>> import numpy as np
        >>> from keras import ops
        >>> from tfbrats.contract import SegmentationContract
        >>> class ReadsLabels:  # channel c of the image is 1 on class c + 1
        ...     segmentation = SegmentationContract().to_json()
        ...     def __call__(self, batch, training=False):
        ...         tumor = ops.cast(batch, "float32")
        ...         return 10.0 * ops.concatenate([1.0 - ops.sum(tumor, -1, keepdims=True), tumor], -1)
        >>> label = np.zeros((4, 32, 32), np.uint8)
        >>> label[1:3, 8:20, 8:20] = 2
        >>> label[2, 10:14, 10:14] = 3
        >>> image = np.stack([(label == c).astype(np.float32) for c in (1, 2, 3)], -1)
        >>> scores = score_volumes(ReadsLabels(), [types.SimpleNamespace(image=image, label=label)])
        >>> {region: round(float(dice), 4) for region, dice in scores.items()}
        {'WT': 1.0, 'TC': 1.0, 'ET': 1.0}
    """
    from tfbrats.contract import SegmentationContract, Window, finish_segmentation
    from tfbrats.evaluation.tuning import mean_dice
    from tfbrats.inference.model import make_predictor
    from tfbrats.inference.predict import window_probabilities

    contract = SegmentationContract.from_json(model.segmentation)
    contract = contract.replace(window=Window(patch_size=None, steps=contract.window.steps, batch_size=1))
    predictor = _VOLUME_PREDICTORS.get(model)
    if predictor is None:
        predictor = _VOLUME_PREDICTORS[model] = make_predictor(model, contract.target)
    labels = [finish_segmentation(window_probabilities(case.image, predictor, contract), case.image, contract)
              for case in cases]
    return mean_dice(labels, [case.label for case in cases], contract.target.label_set)

