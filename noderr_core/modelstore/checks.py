"""Quality gates a model passes before it may be packaged and published.

- `check_onnx_graph`: onnx.checker (full check, with shape inference).
- `check_parity`: the ONNX model reproduces the source model on a hold-out set: identical labels
  and probabilities within `atol` (float32 export of a float64 model: 1e-5 absolute by default).
- `check_metric_floor`: a metric measured on the hold-out set (through onnxruntime, i.e. what nodes
  will compute) is at least a configured floor.
- `check_runs`: for models without a source model (ML team's files): onnxruntime loads it and runs
  one row of zeros through it.
Each returns a CheckOutcome (passed + a description + numbers for the Dagster UI).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_PARITY_ATOL = 1e-5

_NUMPY_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
    "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
}


@dataclass
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def inference_session(onnx_bytes: bytes):
    import onnxruntime as ort

    return ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])


def check_onnx_graph(onnx_bytes: bytes) -> CheckOutcome:
    import onnx

    try:
        model = onnx.load_model_from_string(onnx_bytes)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx raises ValidationError, DecodeError, InferenceError, ...
        return CheckOutcome(False, f"ONNX graph is invalid: {exc}", {"error": str(exc)[:500]})
    return CheckOutcome(True, "onnx.checker (full_check) passed", {"nodes": len(model.graph.node)})


def onnx_predict(onnx_bytes: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = inference_session(onnx_bytes)
    labels, probabilities = session.run(None, {session.get_inputs()[0].name: x})
    return labels, probabilities


def check_parity(onnx_bytes: bytes, estimator, x_holdout: np.ndarray,
                 atol: float = DEFAULT_PARITY_ATOL) -> CheckOutcome:
    try:
        labels, probabilities = onnx_predict(onnx_bytes, x_holdout)
    except Exception as exc:
        return CheckOutcome(False, f"onnxruntime cannot run the model: {exc}", {})
    expected_labels = estimator.predict(x_holdout)
    expected_proba = estimator.predict_proba(x_holdout)
    label_mismatches = int((labels != expected_labels).sum())
    max_abs_diff = float(np.abs(probabilities - expected_proba).max())
    passed = label_mismatches == 0 and max_abs_diff <= atol
    return CheckOutcome(
        passed,
        f"{label_mismatches} label mismatches, max |Δp| {max_abs_diff:.2e} (tolerance {atol:.0e}) "
        f"over {len(x_holdout)} hold-out rows",
        {"label_mismatches": label_mismatches, "max_abs_probability_diff": max_abs_diff,
         "tolerance": atol, "rows": len(x_holdout)},
    )


def holdout_accuracy(onnx_bytes: bytes, x_holdout: np.ndarray, y_holdout: np.ndarray) -> float:
    labels, _ = onnx_predict(onnx_bytes, x_holdout)
    return float((labels == y_holdout).mean())


def check_metric_floor(metric: str, value: float, floor: float) -> CheckOutcome:
    passed = value >= floor
    verdict = "meets" if passed else "is below"
    return CheckOutcome(passed, f"{metric} {value:.4f} {verdict} the floor {floor:.4f}",
                        {metric: value, "floor": floor})


def check_runs(onnx_bytes: bytes) -> CheckOutcome:
    try:
        session = inference_session(onnx_bytes)
        feeds = {}
        for spec in session.get_inputs():
            dtype = _NUMPY_DTYPES.get(spec.type)
            if dtype is None:
                return CheckOutcome(False, f"input {spec.name} has unsupported type {spec.type}", {})
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
        outputs = session.run(None, feeds)
    except Exception as exc:
        return CheckOutcome(False, f"onnxruntime cannot run the model: {exc}", {})
    return CheckOutcome(True, f"onnxruntime ran one zero row: {len(outputs)} outputs",
                        {"outputs": len(outputs)})


def check_signature(onnx_bytes: bytes, expected_inputs: list[dict],
                    expected_outputs: list[dict]) -> CheckOutcome:
    """The model's input/output tensors are the ones the catalog declares (what nodes will feed).

    Each expected tensor is `{name, dtype?, shape?}`: names and order must match; dtype and shape
    are compared when declared (shape entries None = any size, e.g. the batch axis).
    """
    from noderr_core.modelstore.packaging import InvalidModelFile, read_onnx_signature

    try:
        signature = read_onnx_signature(onnx_bytes)
    except InvalidModelFile as exc:
        return CheckOutcome(False, f"cannot read the model's signature: {exc}", {})
    problems: list[str] = []
    for kind, actual, expected in (("input", signature.inputs, expected_inputs),
                                   ("output", signature.outputs, expected_outputs)):
        actual_names = [t.name for t in actual]
        expected_names = [t["name"] for t in expected]
        if actual_names != expected_names:
            problems.append(f"{kind}s are {actual_names}, expected {expected_names}")
            continue
        for tensor, want in zip(actual, expected, strict=True):
            if want.get("dtype") and tensor.dtype != want["dtype"]:
                problems.append(f"{kind} {tensor.name} is {tensor.dtype}, expected {want['dtype']}")
            if want.get("shape") is not None and not _shape_matches(tensor.shape, want["shape"]):
                problems.append(f"{kind} {tensor.name} has shape {tensor.shape}, "
                                f"expected {want['shape']}")
    metadata = {"inputs": ", ".join(f"{t.name}:{t.dtype}{t.shape}" for t in signature.inputs),
                "outputs": ", ".join(f"{t.name}:{t.dtype}{t.shape}" for t in signature.outputs)}
    if problems:
        return CheckOutcome(False, "signature differs from the catalog: " + "; ".join(problems),
                            metadata)
    return CheckOutcome(True, "inputs and outputs match the declared signature", metadata)


def _shape_matches(actual: list[int | None], expected: list[int | None]) -> bool:
    if len(actual) != len(expected):
        return False
    return all(want is None or have == want for have, want in zip(actual, expected, strict=True))
