"""How put_array stores a numpy array: the array header in the metadata.

The object's data is the array's bytes, contiguous in C or Fortran order. The
metadata is one UTF-8 JSON object:

    {"format": "gismo.ndarray", "version": 1,
     "descr": <numpy dtype descr, as in .npy files: "<f8", or a list of
               [name, descr(, shape)] for structured dtypes>,
     "shape": [d0, d1, ...],
     "strides": [s0, s1, ...],       # in bytes, those of `order`
     "order": "C" | "F"}

Any language can read it: the data is shape/strides over little- or
big-endian items as descr says, starting at the first byte of the object.
"""

import json

from .errors import InvalidArgument, NotAnArray

FORMAT = "gismo.ndarray"
VERSION = 1


def _numpy():
    try:
        import numpy
    except ImportError as e:  # pragma: no cover - numpy is a soft dependency
        raise ImportError("gismo arrays need numpy "
                          "(apt-get install python3-numpy)") from e
    return numpy


def _contiguous_strides(shape, itemsize, order):
    strides = [0] * len(shape)
    step = itemsize
    axes = range(len(shape) - 1, -1, -1) if order == "C" else range(len(shape))
    for axis in axes:
        strides[axis] = step
        step *= shape[axis]
    return strides


def encode(array):
    """(raw bytes view, header) for an ndarray; copies only if it is not
    contiguous in C or Fortran order."""
    np = _numpy()
    if not isinstance(array, np.ndarray):
        raise TypeError("put_array takes a numpy.ndarray, not "
                        f"{type(array).__name__}")
    if array.dtype.hasobject:
        raise InvalidArgument("arrays of Python objects cannot be shared: "
                              f"dtype {array.dtype} holds pointers")
    if array.flags.c_contiguous:
        order, flat = "C", array.reshape(-1)
    elif array.flags.f_contiguous:
        order, flat = "F", array.T.reshape(-1)
    else:
        array = np.ascontiguousarray(array)
        order, flat = "C", array.reshape(-1)
    raw = flat.view(np.uint8) if array.dtype.itemsize else b""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "descr": np.lib.format.dtype_to_descr(array.dtype),
        "shape": list(array.shape),
        "strides": _contiguous_strides(array.shape, array.dtype.itemsize,
                                       order),
        "order": order,
    }
    return raw, json.dumps(header, separators=(",", ":")).encode()


def _descr_from_json(descr):
    """A descr as JSON gives it back (lists) in the form numpy takes
    (tuples), at every level of a nested structured dtype."""
    if not isinstance(descr, list):
        return descr
    fields = []
    for field in descr:
        if not isinstance(field, list) or not 2 <= len(field) <= 3:
            raise ValueError(f"bad field {field!r}")
        name, sub = field[0], _descr_from_json(field[1])
        if isinstance(name, list):
            name = tuple(name)  # (title, name)
        fields.append((name, sub, tuple(field[2])) if len(field) == 3 else
                      (name, sub))
    return fields


def _ints(values):
    """A header's list of dimensions or strides, each a JSON integer that
    fits numpy's intp (not 1.5, 1e400 or true)."""
    if not isinstance(values, list) or not all(
            type(v) is int and -2**63 <= v < 2**63 for v in values):
        raise ValueError(f"{values!r} is not a list of 64-bit integers")
    return tuple(values)


def decode(metadata, data_size):
    """(dtype, shape, strides) from a header; NotAnArray if it is not one
    put_array wrote or does not match data_size."""
    np = _numpy()
    try:
        header = json.loads(bytes(metadata).decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: nesting deeper than the interpreter's stack.
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise NotAnArray("the object's metadata is not a gismo.ndarray header")
    if header.get("version") != VERSION:
        raise NotAnArray(
            f"gismo.ndarray header version {header.get('version')} is not "
            f"supported (this is version {VERSION})")
    try:
        dtype = np.lib.format.descr_to_dtype(_descr_from_json(header["descr"]))
        shape = _ints(header["shape"])
        strides = _ints(header["strides"])
        order = header["order"]
    except RecursionError:
        raise NotAnArray("bad gismo.ndarray header: its descr is nested "
                         "too deeply") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError,
            SyntaxError) as e:
        raise NotAnArray(f"bad gismo.ndarray header: {e}") from e
    # Metadata written by another client is input: an object dtype would
    # make numpy read raw words of shared memory as PyObject pointers.
    if dtype.hasobject:
        raise NotAnArray(f"gismo.ndarray header: dtype {dtype} holds Python "
                         "objects (pointers), which cannot be shared")
    if order not in ("C", "F") or len(strides) != len(shape) or any(
            d < 0 for d in shape):
        raise NotAnArray("bad gismo.ndarray header: shape/strides/order")
    nbytes = dtype.itemsize
    nonzero = 1
    for d in shape:
        nbytes *= d
        nonzero *= d or 1
    if nonzero >= 2**63:  # an empty array of such dimensions: numpy refuses it
        raise NotAnArray("bad gismo.ndarray header: its dimensions overflow "
                         "64 bits")
    if nbytes != data_size:
        raise NotAnArray(f"gismo.ndarray header describes {nbytes} bytes, "
                         f"the object holds {data_size}")
    if list(strides) != _contiguous_strides(shape, dtype.itemsize, order):
        raise NotAnArray("gismo.ndarray header: strides are not contiguous")
    return dtype, shape, strides
