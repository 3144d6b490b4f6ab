"""Fixtures: a real gismo-manager on a private region and socket.

Needs the gismo package on PYTHONPATH (the build tree's <build>/python) and
the manager binary in $GISMO_MANAGER_BIN (or gismo-manager on PATH).
"""

import os
import selectors
import shutil
import subprocess
import sys
import uuid

import pytest

SKIP_RETURN_CODE = 77  # ctest's SKIP_RETURN_CODE (tests/python/CMakeLists.txt)
MODULE_BUILT = os.environ.get("GISMO_PYTHON_MODULE_BUILT") != "0"

if MODULE_BUILT:
    import gismo
else:
    collect_ignore_glob = ["test_*.py"]

    def pytest_report_header(config):
        return "gismo: the Python module is not built here; skipping"

    def pytest_sessionfinish(session, exitstatus):
        print("gismo: the Python module is not built in this configuration; "
              "skipped", file=sys.stderr)
        session.exitstatus = SKIP_RETURN_CODE

READY_TIMEOUT_S = 30


class Manager:
    """A gismo-manager process serving a fresh region."""

    def __init__(self, binary, size="128MiB", extra=()):
        run = os.environ.get("GISMO_TEST_RUN", "")
        run = f"{run}-" if run.isascii() and run.isalnum() and len(run) <= 24 else ""
        name = f"gismo-{run}pytest-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.region = f"/dev/shm/{name}"
        self.socket = f"/tmp/{name}.sock"
        self.address = f"unix:{self.socket}"
        self.args = [binary, "--region", self.region, "--size", size,
                     "--listen", self.address, "--log-level", "warn", *extra]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        try:
            self.ready_line = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self):
        # Reads the manager's stdout until the ready line, its exit (EOF) or
        # the deadline; no polling.
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        out = b""
        try:
            while b"gismo-manager ready" not in out:
                if not sel.select(READY_TIMEOUT_S):
                    raise RuntimeError("gismo-manager did not get ready in "
                                       f"{READY_TIMEOUT_S}s")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")
                    raise RuntimeError(f"gismo-manager exited: {err}")
                out += chunk
        finally:
            sel.close()
        return out.decode(errors="replace")

    def connect(self):
        return gismo.connect(self.address)

    def restart(self):
        """Starts a manager again on the same region and address (after
        proc.kill()); its clients re-attach to it."""
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.ready_line = self._wait_ready()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        for path in (self.region, self.socket):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def manager_binary():
    binary = os.environ.get("GISMO_MANAGER_BIN") or shutil.which(
        "gismo-manager")
    if not binary or not os.access(binary, os.X_OK):
        pytest.skip("set GISMO_MANAGER_BIN to the gismo-manager binary")
    return binary


@pytest.fixture(scope="session")
def manager():
    m = Manager(manager_binary())
    yield m
    m.stop()


@pytest.fixture
def fresh_manager():
    """A manager of its own, for tests that count objects or kill it."""
    m = Manager(manager_binary(), size="64MiB")
    yield m
    m.stop()


@pytest.fixture
def start_manager():
    """Starts managers with extra command line options, e.g.
    start_manager("--event-capacity", "64"); each is stopped at the end."""
    started = []

    def start(*extra):
        m = Manager(manager_binary(), size="64MiB", extra=extra)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


@pytest.fixture
def client(manager):
    with manager.connect() as c:
        yield c


@pytest.fixture
def other(manager):
    """A second client of the same manager."""
    with manager.connect() as c:
        yield c


@pytest.fixture
def oid():
    return gismo.ObjectID.random()


def python_env():
    """The environment of a child Python that can import gismo."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [os.path.dirname(os.path.dirname(gismo.__file__)),
                    env.get("PYTHONPATH", "")] if p)
    return env


@pytest.fixture
def run_python():
    """Starts `sys.executable -c code args...` able to import gismo."""
    procs = []

    def start(code, *args):
        p = subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                             env=python_env(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=30)
