from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from server.errors import InvalidInput
from server.scoring.feeds import build_feeds
from server.scoring.mapping import build_mapping
from server.tensors import TensorSpec

MATRIX = (TensorSpec("input", "FP32", (-1, 3)),)


def schema(**types: pa.DataType) -> pa.Schema:
    return pa.schema(list(types.items()))


def test_default_features_are_numeric_columns_not_kept_in_file_order() -> None:
    s = schema(id=pa.int64(), c=pa.float64(), name=pa.string(), a=pa.int32(), b=pa.bool_())
    mapping = build_mapping(s, MATRIX, None, ["id"])
    assert mapping.sources[0].columns == ("c", "a", "b")
    assert mapping.read_columns == ["id", "c", "a", "b"]


def test_wrong_feature_count() -> None:
    s = schema(a=pa.float32(), b=pa.float32())
    with pytest.raises(InvalidInput, match="takes 3 features, but 2 columns were given: a, b"):
        build_mapping(s, MATRIX, None, [])


def test_non_numeric_feature() -> None:
    s = schema(a=pa.float32(), b=pa.float32(), c=pa.timestamp("s"))
    with pytest.raises(InvalidInput, match=r"column 'c' \(timestamp\[s\]\).*not a numeric"):
        build_mapping(s, MATRIX, ["a", "b", "c"], [])


def test_float_into_integer_input_is_refused() -> None:
    spec = (TensorSpec("x", "INT64", (-1,)),)
    with pytest.raises(InvalidInput, match="cannot cast float64 to INT64"):
        build_mapping(schema(x=pa.float64()), spec, None, [])


def test_two_inputs_without_columns() -> None:
    specs = (TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "FP32", (-1, 2)))
    with pytest.raises(InvalidInput, match="model inputs 'a', 'b' have no column of that name"):
        build_mapping(schema(x=pa.float32()), specs, None, [])


def test_scalar_column_cannot_feed_a_tensor() -> None:
    spec = (TensorSpec("x", "FP32", (-1, 4)),)
    with pytest.raises(InvalidInput, match="store each row's tensor in a FixedSizeList"):
        build_mapping(schema(x=pa.float32()), spec, None, [])


def test_fixed_size_list_shape_must_fit() -> None:
    spec = (TensorSpec("x", "FP32", (-1, 2, 2)),)
    with pytest.raises(InvalidInput, match=r"rows of shape \[5\] do not fit"):
        build_mapping(schema(x=pa.list_(pa.float32(), 5)), spec, None, [])


def test_missing_kept_column() -> None:
    with pytest.raises(InvalidInput, match="--keep: column 'id' is not in the input"):
        build_mapping(schema(a=pa.float32()), MATRIX, None, ["id"])


def test_matrix_casts_and_stacks_once() -> None:
    batch = pa.record_batch(
        {"a": pa.array([1, 2], pa.int64()), "b": [0.5, 1.5], "c": pa.array([True, False])}
    )
    mapping = build_mapping(batch.schema, MATRIX, None, [])
    feeds = build_feeds(mapping, batch)
    expected = np.array([[1, 0.5, 1], [2, 1.5, 0]], dtype=np.float32)
    np.testing.assert_array_equal(feeds.tensors["input"], expected)
    assert feeds.copied_bytes == expected.nbytes


def test_same_dtype_column_is_zero_copy() -> None:
    batch = pa.record_batch({"x": pa.array([1.0, 2.0], pa.float32())})
    mapping = build_mapping(batch.schema, (TensorSpec("x", "FP32", (-1,)),), None, [])
    feeds = build_feeds(mapping, batch)
    assert feeds.copied_bytes == 0
    assert feeds.tensors["x"].tolist() == [1.0, 2.0]


def test_null_inside_a_fixed_size_list_row() -> None:
    values = pa.array([1.0, 2.0, None, 4.0], pa.float32())
    batch = pa.record_batch({"x": pa.FixedSizeListArray.from_arrays(values, 2)})
    mapping = build_mapping(batch.schema, (TensorSpec("x", "FP32", (-1, 2)),), None, [])
    feeds = build_feeds(mapping, batch)
    assert feeds.error_positions.tolist() == [1]
    assert feeds.error_reasons == ["column 'x' has a null element"]
    assert feeds.tensors["x"].tolist() == [[1.0, 2.0]]


def test_null_lists_and_null_elements_together() -> None:
    values = pa.array([1.0, 2.0, 3.0, 4.0, None, 6.0], pa.float32())
    mask = pa.array([True, False, False])
    batch = pa.record_batch({"x": pa.FixedSizeListArray.from_arrays(values, 2, mask=mask)})
    mapping = build_mapping(batch.schema, (TensorSpec("x", "FP32", (-1, 2)),), None, [])
    feeds = build_feeds(mapping, batch)
    assert feeds.error_positions.tolist() == [0, 2]
    assert feeds.error_reasons == ["column 'x' is null", "column 'x' has a null element"]
    assert feeds.tensors["x"].tolist() == [[3.0, 4.0]]
