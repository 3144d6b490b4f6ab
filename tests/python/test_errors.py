"""Status codes and their exception classes, made from the one list in
include/gismo/status_codes.h; restated here so that a change to the public
names or the hierarchy fails a test."""

import ast
import builtins
import pathlib
import pickle

import pytest

import gismo

# status: (class name, builtin exception it also is, or None)
EXPECTED = {
    "INVALID_ARGUMENT": ("InvalidArgument", ValueError),
    "OBJECT_EXISTS": ("ObjectExists", None),
    "OBJECT_NOT_FOUND": ("ObjectNotFound", LookupError),
    "OBJECT_NOT_SEALED": ("ObjectNotSealed", None),
    "OBJECT_ALREADY_SEALED": ("ObjectAlreadySealed", None),
    "OBJECT_IN_USE": ("ObjectInUse", None),
    "OUT_OF_MEMORY": ("StoreFull", MemoryError),
    "TIMEOUT": ("Timeout", TimeoutError),
    "CONNECTION": ("ConnectionError", builtins.ConnectionError),
    "PROTOCOL": ("ProtocolError", None),
    "IO": ("IOError", OSError),
    "LIMIT": ("LimitReached", None),
    "NOT_CREATOR": ("NotCreator", PermissionError),
    "NOT_HELD": ("NotHeld", None),
    "BAD_REGION": ("BadRegion", None),
    "INTERNAL": ("InternalError", None),
    "UNSUPPORTED": ("Unsupported", NotImplementedError),
    "BUSY": ("Busy", None),
    "PERMISSION": ("PermissionDenied", PermissionError),
    "CONFLICT": ("Conflict", None),
}


def test_status_values_are_those_of_the_c_api():
    assert [(s.name, int(s)) for s in gismo.Status.__members__.values()] == [
        ("OK", 0), *((name, value) for value, name in enumerate(EXPECTED, 1))]


@pytest.mark.parametrize("name", EXPECTED)
def test_every_code_maps_to_its_exception_class(name):
    class_name, builtin = EXPECTED[name]
    status = gismo.Status.__members__[name]
    cls = gismo.STATUS_ERRORS[status]
    assert cls is getattr(gismo, class_name) is getattr(gismo.errors,
                                                        class_name)
    assert class_name in gismo.__all__
    assert cls.__name__ == class_name and cls.__module__ == "gismo.errors"
    assert issubclass(cls, gismo.Error) and cls.status == status
    if builtin is not None:
        assert issubclass(cls, builtin)
    assert gismo.status_message(status) in cls.__doc__

    # What a call failing with the code raises.
    with pytest.raises(cls) as e:
        gismo._gismo._raise_status(int(status), "the detail")
    assert type(e.value) is cls
    assert e.value.status == status and str(e.value) == "the detail"

    copy = pickle.loads(pickle.dumps(e.value))
    assert type(copy) is cls and str(copy) == "the detail"


def test_only_ok_has_no_exception_class():
    assert set(gismo.STATUS_ERRORS) == set(gismo.Status.__members__.values()) - {
        gismo.Status.OK}
    assert not issubclass(gismo.NotAnArray, tuple(gismo.STATUS_ERRORS.values()))


def test_busy_says_to_try_again():
    assert "try again later" in gismo.status_message(gismo.Status.BUSY)


def _package_imports():
    """{module: the package's modules it imports}, at any depth in it."""
    package = pathlib.Path(gismo.__file__).parent
    modules = {p.stem for p in package.glob("*.py")} - {"__init__"}
    graph = {}
    for name in modules:
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    imported.add(node.module.split(".")[0])
                else:
                    imported.update(a.name for a in node.names)
        graph[name] = imported & modules
    return graph


def test_the_package_has_no_import_cycle():
    graph = _package_imports()
    assert "client" in graph["subscription"] or "subscription" in graph[
        "client"]  # they do depend on each other, one way
    done, path = set(), []

    def visit(module):
        assert module not in path, f"import cycle: {path + [module]}"
        if module in done:
            return
        path.append(module)
        for dependency in graph[module]:
            visit(dependency)
        path.pop()
        done.add(module)

    for module in graph:
        visit(module)
