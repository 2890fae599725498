"""The reference model: an iris classifier trained on scikit-learn's bundled dataset, as ONNX.

Nothing is downloaded: the iris data ships inside scikit-learn. Training is deterministic (fixed
split seed, deterministic solver) and so is the ONNX export, so re-materializing produces the same
bytes (and therefore the same content address and the same published version).

ONNX contract for nodes: input `input` float32 [N, 4]; outputs `label` int64 [N] and
`probabilities` float32 [N, 3] (zipmap disabled so outputs are plain tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFERENCE_MODEL_NAME = "iris-classifier"
# Default-domain opset 17 (ai.onnx.ml 3): supported by every onnxruntime release since 1.13.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT_NAME = "input"
HOLDOUT_FRACTION = 0.3
SPLIT_SEED = 42


@dataclass
class TrainedReferenceModel:
    estimator: object  # fitted sklearn classifier
    x_holdout: np.ndarray  # float32
    y_holdout: np.ndarray
    train_rows: int
    metrics: dict[str, float]


def train_reference_model() -> TrainedReferenceModel:
    """The reference model: logistic regression."""
    from sklearn.linear_model import LogisticRegression

    return _train_on_iris(LogisticRegression(max_iter=1000))


def train_iris_decision_tree() -> TrainedReferenceModel:
    """A second iris model (depth-3 decision tree, fixed seed): same data, different estimator."""
    from sklearn.tree import DecisionTreeClassifier

    return _train_on_iris(DecisionTreeClassifier(max_depth=3, random_state=SPLIT_SEED))


# Training recipes a model catalog may name as its source (`source: {training: <name>}`).
TRAINERS = {
    "iris-logistic-regression": train_reference_model,
    "iris-decision-tree": train_iris_decision_tree,
}


def _train_on_iris(estimator) -> TrainedReferenceModel:
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    x, y = load_iris(return_X_y=True)
    x_train, x_holdout, y_train, y_holdout = train_test_split(
        x.astype(np.float32), y, test_size=HOLDOUT_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    estimator.fit(x_train, y_train)
    accuracy = float((estimator.predict(x_holdout) == y_holdout).mean())
    return TrainedReferenceModel(
        estimator=estimator,
        x_holdout=x_holdout,
        y_holdout=y_holdout,
        train_rows=len(x_train),
        metrics={"holdout_accuracy": accuracy},
    )


def export_to_onnx(estimator, n_features: int, model_name: str = REFERENCE_MODEL_NAME) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onnx_model = convert_sklearn(
        estimator,
        "noderr-" + model_name,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={id(estimator): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return onnx_model.SerializeToString()
