"""gismo.ObjectID: construction, hex, names, hashing, pickling."""

import copy
import pickle
import struct

import pytest

import gismo

M64 = (1 << 64) - 1


def reference_from_name(name):
    """gismo::ObjectId::FromName (gismo.hpp), restated independently."""
    h = [0xcbf29ce484222325, 0x84222325cbf29ce4, 0x9e3779b97f4a7c15]
    for c in name.encode():
        for k in range(3):
            h[k] ^= c + k
            h[k] = (h[k] * 0x100000001b3) & M64
            h[k] ^= h[k] >> 29
    for k in range(3):  # in place: word 2 mixes the final word 0
        x = h[k] ^ ((h[(k + 1) % 3] << 1) & M64)
        x ^= x >> 33
        x = (x * 0xff51afd7ed558ccd) & M64
        x ^= x >> 33
        x = (x * 0xc4ceb9fe1a85ec53) & M64
        x ^= x >> 33
        h[k] = x
    return struct.pack("<3Q", *h)[:20]


@pytest.mark.parametrize("name", ["", "x", "weights", "a" * 1000, "π/ü"])
def test_from_name_matches_cpp(name):
    oid = gismo.ObjectID.from_name(name)
    assert oid.binary == reference_from_name(name)
    assert gismo.ObjectID.from_name(name) == oid


def test_from_name_known_value():
    # Printed by C++ gismo::ObjectId::FromName(name).Hex().
    assert gismo.ObjectID.from_name("x").hex() == \
        "6880a8680a02d8a62c948cf14bfe68a9f97c7fce"
    assert gismo.ObjectID.from_name("weights").hex() == \
        "180a43955f4035ade9a0663da8dd6d29d88a7161"
    assert gismo.ObjectID.from_name("x") != gismo.ObjectID.from_name("y")


def test_hex_round_trip_and_bytes():
    oid = gismo.ObjectID.random()
    assert len(oid.hex()) == 40
    assert gismo.ObjectID.from_hex(oid.hex()) == oid
    assert gismo.ObjectID.from_hex(oid.hex().upper()) == oid
    assert str(oid) == oid.hex()
    assert repr(oid) == f"ObjectID('{oid.hex()}')"
    assert bytes(oid) == oid.binary and len(oid.binary) == gismo.ID_SIZE
    assert gismo.ObjectID(oid.binary) == oid
    assert gismo.ObjectID(bytearray(oid.binary)) == oid
    assert gismo.ObjectID(memoryview(oid.binary)) == oid
    assert gismo.ObjectID(oid) == oid


def test_random_ids_differ():
    ids = {gismo.ObjectID.random() for _ in range(1000)}
    assert len(ids) == 1000


def test_hash_equality_order():
    a = gismo.ObjectID.from_name("a")
    a2 = gismo.ObjectID.from_hex(a.hex())
    b = gismo.ObjectID.from_name("b")
    assert a == a2 and hash(a) == hash(a2)
    assert a != b
    assert a != a.binary  # an ObjectID is not its bytes
    assert {a: 1}[a2] == 1
    assert sorted([b, a]) == sorted([a, b])
    assert (a < b) != (b < a)
    lo, hi = sorted([a, b])
    assert lo < hi and lo <= hi and hi > lo and hi >= lo
    assert lo <= lo and lo >= lo and not lo < lo and not lo > lo
    assert not hi <= lo and not lo >= hi


def test_pickle_and_copy():
    oid = gismo.ObjectID.random()
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(oid, protocol=proto))
        assert back == oid and isinstance(back, gismo.ObjectID)
    assert copy.copy(oid) == oid and copy.deepcopy(oid) == oid


@pytest.mark.parametrize("bad", ["zz", "g" * 40, "0" * 39, "0" * 41])
def test_bad_hex(bad):
    with pytest.raises(gismo.InvalidArgument):
        gismo.ObjectID.from_hex(bad)
    with pytest.raises(ValueError):  # InvalidArgument is a ValueError
        gismo.ObjectID.from_hex(bad)


def test_bad_construction():
    with pytest.raises(gismo.InvalidArgument, match="20 bytes"):
        gismo.ObjectID(b"short")
    with pytest.raises(TypeError, match="ObjectID or 20 bytes"):
        gismo.ObjectID("0" * 40)
    with pytest.raises(TypeError):
        gismo.ObjectID(12345)
