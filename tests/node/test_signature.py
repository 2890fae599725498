"""Input validation against a manifest's signature: every client mistake is a precise error."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from node_service.signature import InputError, TooManyRows, validate_inputs
from noderr_protocol.models import ModelManifest, TensorSpec


@pytest.fixture
def manifest() -> ModelManifest:
    return ModelManifest(
        name="iris", version=3, sha256="0" * 64, size_bytes=10,
        inputs=[TensorSpec(name="float_input", dtype="float32", shape=[None, 4])],
        outputs=[TensorSpec(name="label", dtype="int64", shape=[None]),
                 TensorSpec(name="probabilities", dtype="float32", shape=[None, 3])],
        opset=17, created_at=datetime.now(UTC),
    )


def test_valid_rows_become_float32_batch(manifest):
    feeds, rows = validate_inputs(manifest, {"float_input": [[5.1, 3.5, 1.4, 0.2], [6, 3, 4, 1]]}, 8)
    assert rows == 2
    assert feeds["float_input"].dtype == np.float32
    assert feeds["float_input"].shape == (2, 4)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"wrong": [[1, 2, 3, 4]]}, "missing input(s) ['float_input']; unknown input(s) ['wrong']"),
        ({"float_input": [[1, 2, 3, 4]], "extra": [[1]]}, "unknown input(s) ['extra']"),
        ({"float_input": [[1, 2, 3]]}, "dimension 1 must be 4, got 3"),
        ({"float_input": [1, 2, 3, 4]}, "must have 2 dimensions"),
        ({"float_input": [[1, 2, 3, 4], [1, 2]]}, "ragged"),
        ({"float_input": [["a", "b", "c", "d"]]}, "must hold float32 values, got string"),
        ({"float_input": [[True, False, True, False]]}, "got bool"),
        ({"float_input": [[1, None, 3, 4]]}, "mixed/unsupported"),
        ({"float_input": []}, "non-empty list of rows"),
        ({"float_input": "1,2,3,4"}, "non-empty list of rows"),
        ({"float_input": [[1, 2, 3, float("nan")]]}, "NaN or infinity"),
        ({}, "'inputs' must be an object"),
    ],
)
def test_bad_inputs_name_the_problem_and_carry_the_signature(manifest, inputs, message):
    with pytest.raises(InputError) as info:
        validate_inputs(manifest, inputs, 8)
    assert message in str(info.value)
    assert info.value.expected["inputs"] == [
        {"name": "float_input", "dtype": "float32", "shape": [None, 4]}]
    assert info.value.expected["version"] == 3


def test_too_many_rows_is_its_own_error(manifest):
    with pytest.raises(TooManyRows, match="at most 8"):
        validate_inputs(manifest, {"float_input": [[0, 0, 0, 0]] * 9}, 8)


def test_int_tensor_refuses_fractions_and_rows_must_agree():
    manifest = ModelManifest(
        name="two", version=1, sha256="0" * 64, size_bytes=1,
        inputs=[TensorSpec(name="ids", dtype="int64", shape=[None, 2]),
                TensorSpec(name="mask", dtype="bool", shape=[None])],
        outputs=[TensorSpec(name="y", dtype="float32", shape=[None])],
        opset=17, created_at=datetime.now(UTC),
    )
    with pytest.raises(InputError, match="must hold int64 values, got float"):
        validate_inputs(manifest, {"ids": [[1.5, 2]], "mask": [True]}, 8)
    with pytest.raises(InputError, match="same number of rows"):
        validate_inputs(manifest, {"ids": [[1, 2], [3, 4]], "mask": [True]}, 8)
    feeds, rows = validate_inputs(manifest, {"ids": [[1, 2]], "mask": [True]}, 8)
    assert rows == 1 and feeds["ids"].dtype == np.int64 and feeds["mask"].dtype == np.bool_
