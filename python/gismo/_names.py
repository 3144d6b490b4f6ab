"""Names (checkpoint sets, cache keys and namespaces) as the bytes that ids
are derived from, the same everywhere and as the C++ side derives them."""


def name_bytes(value, what):
    """`value` as bytes: a str in UTF-8 (a name listed back that is not
    UTF-8 carries surrogate escapes: its own bytes), bytes-like as given;
    anything else is a TypeError naming `what`."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} is a str or bytes, not {type(value).__name__}")
