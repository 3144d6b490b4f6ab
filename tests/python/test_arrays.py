"""put_array / get_array: dtype, shape and order round trips, no copy."""

import json

import numpy as np
import pytest

import gismo

ARRAYS = {
    "float64": np.arange(24, dtype=np.float64).reshape(2, 3, 4),
    "fortran": np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
    "strided": np.arange(100, dtype=np.int64)[::3],
    "transposed": np.arange(30, dtype=np.uint16).reshape(5, 6)[:, 1:].T,
    "scalar": np.array(3.5),
    "empty": np.zeros((0, 5), dtype=np.float32),
    "bool": np.array([True, False, True]),
    "complex": np.arange(6, dtype=np.complex128) * 1j,
    "big_endian": np.arange(10, dtype=">u4"),
    "datetime": np.array(["2024-01-01", "2025-06-30"], dtype="M8[D]"),
    "bytes": np.array([b"ab", b"cde"]),
    "unicode": np.array(["gismo", "π"]),
    "structured": np.array([(1, 2.0, (3, 4)), (5, 6.0, (7, 8))],
                           dtype=[("a", "<i4"), ("b", "<f8"),
                                  ("c", "<i2", (2,))]),
}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_round_trip(client, name):
    original = ARRAYS[name]
    oid = gismo.ObjectID.random()
    client.put_array(oid, original)
    got = client.get_array(oid)
    assert got.dtype == original.dtype and got.shape == original.shape
    np.testing.assert_array_equal(got, original)
    assert not got.flags.writeable
    if original.flags.f_contiguous and not original.flags.c_contiguous:
        assert got.flags.f_contiguous and not got.flags.c_contiguous
    else:
        assert got.flags.c_contiguous


def test_header_is_documented_json(client, oid):
    client.put_array(oid, np.asfortranarray(np.zeros((2, 3), dtype="<f4")))
    header = json.loads(client.get(oid).metadata)
    assert header == {"format": "gismo.ndarray", "version": 1, "descr": "<f4",
                      "shape": [2, 3], "strides": [4, 8], "order": "F"}


def test_large_array_is_not_copied_on_get(client, oid):
    original = np.random.default_rng(1).random((1000, 1000))  # 8 MB
    client.put_array(oid, original)
    a, b = client.get_array(oid), client.get_array(oid)
    assert a.ctypes.data == b.ctypes.data  # both view the same shared bytes
    assert client.stat(oid)["refs"] == 2
    np.testing.assert_array_equal(a, original)


def test_get_array_of_non_array(client, oid):
    client.put_bytes(oid, b"12345678", metadata=b"not json")
    with pytest.raises(gismo.NotAnArray):
        client.get_array(oid)
    assert client.stat(oid)["refs"] == 0  # the reference was given back
    other = gismo.ObjectID.random()
    client.put_bytes(other, b"1234", metadata=json.dumps(
        {"format": "gismo.ndarray", "version": 1, "descr": "<f8",
         "shape": [1], "strides": [8], "order": "C"}).encode())
    with pytest.raises(gismo.NotAnArray, match="8 bytes"):
        client.get_array(other)  # the header claims more than the data


def test_get_array_times_out(client, oid):
    with pytest.raises(gismo.Timeout):
        client.get_array(oid, timeout_ms=10)


def test_bad_arrays(client, oid):
    with pytest.raises(gismo.InvalidArgument, match="objects"):
        client.put_array(oid, np.array([object(), 1], dtype=object))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        client.put_array(oid, [1, 2, 3])
    assert not client.contains(oid)
    client.put_array(oid, np.zeros(3))
    with pytest.raises(gismo.ObjectExists):
        client.put_array(oid, np.zeros(3))


def _put_header(client, oid, descr, shape, strides, data=b""):
    client.put_bytes(oid, data, metadata=json.dumps(
        {"format": "gismo.ndarray", "version": 1, "descr": descr,
         "shape": shape, "strides": strides, "order": "C"}).encode())


@pytest.mark.parametrize("descr", [
    "|O",
    [["a", "<i8"], ["b", "|O"]],
    [["outer", [["inner", "|O"]]]],
    [["sub", "|O", [2]]],
])
def test_get_array_refuses_object_dtypes(client, descr):
    """Another client's header naming Python objects: numpy would turn the
    shared bytes into pointers (touching one crashed the reader)."""
    oid = gismo.ObjectID.random()
    _put_header(client, oid, descr, [2], [16], b"\x41" * 32)
    with pytest.raises(gismo.NotAnArray, match="objects"):
        client.get_array(oid)
    assert client.stat(oid)["refs"] == 0


@pytest.mark.parametrize("shape,strides", [
    ([float("inf")], [1]),
    ([2.0], [1]),
    ([True, 2], [2, 1]),
    ([2**64, 0], [0, 1]),
    ([2**62, 2**62, 0], [0, 0, 1]),
    ("2", [1]),
])
def test_get_array_refuses_dimensions_that_are_not_integers(client, shape, strides):
    """Another client's header: dimensions and strides are 64-bit JSON
    integers (Infinity raised OverflowError, 2.0 passed as 2)."""
    oid = gismo.ObjectID.random()
    _put_header(client, oid, "|u1", shape, strides, b"ab")
    with pytest.raises(gismo.NotAnArray, match="64.bit"):
        client.get_array(oid)
    assert client.stat(oid)["refs"] == 0


def test_get_array_of_a_header_numpy_refuses(client):
    """A header the decoder accepts but numpy does not (more dimensions
    than numpy has): NotAnArray, and the reference taken is given back."""
    oid = gismo.ObjectID.random()
    _put_header(client, oid, "|u1", [1] * 65, [1] * 65, b"a")
    with pytest.raises(gismo.NotAnArray):
        client.get_array(oid)
    assert client.stat(oid)["refs"] == 0


def test_get_array_of_deeply_nested_metadata(client):
    """Nesting past the interpreter's recursion limit: the package's error,
    not RecursionError."""
    deep = gismo.ObjectID.random()
    client.put_bytes(deep, b"", metadata=b"[" * 100000 + b"]" * 100000)
    with pytest.raises(gismo.NotAnArray):
        client.get_array(deep)
    assert client.stat(deep)["refs"] == 0
