// gismo._gismo: the C API (through gismo.hpp) for Python.
//
// Ownership model:
//   Core      owns one gismo_client_t. It is shared by the Client and by every
//             object that points into the region (Buffer, the exporter behind
//             a create() memoryview), so the mapping outlives all of them. The
//             last owner to go disconnects.
//   Buffer    owns one reference taken by gismo_get. It exports its bytes
//             read-only through the buffer protocol and counts its exports;
//             the reference is given back only when it was asked for (release
//             or garbage collection) and no export is left.
// Every call into the C library runs without the GIL; gismo_last_error() is
// read on the same thread right after the call, before any other gismo call.
#include <Python.h>
#include <gismo/gismo.h>
#include <poll.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <gismo/checkpoint.hpp>
#include <gismo/gismo.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

// A failed call; translated to the gismo.Error subclass registered for code.
class StatusError : public std::exception {
 public:
  StatusError(gismo_status_t code, std::string message)
      : code_(code), message_(std::move(message)) {}
  gismo_status_t code() const { return code_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  gismo_status_t code_;
  std::string message_;
};

// Must be called on the thread that made the failed call, before any other
// gismo call on it.
[[noreturn]] void ThrowStatus(gismo_status_t code) {
  std::string detail = gismo_last_error();
  if (detail.empty()) detail = gismo_status_message(code);
  throw StatusError(code, std::move(detail));
}

void Check(gismo_status_t code) {
  if (code != GISMO_OK) ThrowStatus(code);
}

[[noreturn]] void ThrowInvalid(const std::string& message) {
  throw StatusError(GISMO_ERR_INVALID_ARGUMENT, message);
}

// The largest size a create takes here: its writable view's length is a
// Py_ssize_t (the store refuses what its heap cannot hold).
constexpr uint64_t kMaxObjectSize = PY_SSIZE_T_MAX;

// A count or size argument: any Python integer (numpy's too, through
// __index__) from 0 to `max`. TypeError for anything else (a bool, a float),
// InvalidArgument for one out of range: never pybind11's overload error.
uint64_t CountArg(py::handle value, const char* what, uint64_t max) {
  if (PyBool_Check(value.ptr()) || !PyIndex_Check(value.ptr())) {
    throw py::type_error(std::string(what) + " must be an int, not " +
                         std::string(py::str(py::type::handle_of(value).attr("__name__"))));
  }
  py::int_ n = py::reinterpret_steal<py::int_>(PyNumber_Index(value.ptr()));
  if (!n) throw py::error_already_set();
  if (n < py::int_(0) || n > py::int_(max)) {
    ThrowInvalid(std::string(what) + " must be from 0 to " + std::to_string(max) + ", got " +
                 std::string(py::str(n)));
  }
  return n.cast<uint64_t>();
}

// status code -> exception class; filled by gismo.errors at import.
py::dict& ErrorClasses() {
  static py::dict* classes =
      new py::dict();  // never destroyed: outlives the interpreter's teardown
  return *classes;
}

bool Finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// The GIL given away for its scope, as py::gil_scoped_release, but taken
// back by a destructor that a forced unwind may leave: a daemon thread that
// takes the GIL back once the interpreter is finalizing is ended there
// (PyEval_RestoreThread calls pthread_exit), and that unwind, started in
// pybind11's noexcept destructor, was std::terminate: SIGABRT at the exit
// of a program whose daemon thread waited in a get or a subscription.
// (pybind11's dispatcher lets the unwind through.)
class GilReleased {
 public:
  GilReleased() : state_(PyEval_SaveThread()) {}
  ~GilReleased() noexcept(false) { PyEval_RestoreThread(state_); }
  GilReleased(const GilReleased&) = delete;
  GilReleased& operator=(const GilReleased&) = delete;

 private:
  PyThreadState* state_;
};

// Runs fn without the GIL when it is safe to give the GIL away.
template <typename Fn>
auto WithoutGil(Fn&& fn) {
  if (PyGILState_Check() && !Finalizing()) {
    GilReleased nogil;
    return fn();
  }
  return fn();
}

// ----- ids ------------------------------------------------------------------

class PyObjectId {
 public:
  PyObjectId() = default;
  explicit PyObjectId(const gismo::ObjectId& id) : id_(id) {}
  const gismo::ObjectId& id() const { return id_; }
  py::bytes Bytes() const {
    return py::bytes(reinterpret_cast<const char*>(id_.data()), gismo::ObjectId::kSize);
  }

 private:
  gismo::ObjectId id_;
};

// An id from a gismo.ObjectID or exactly 20 raw bytes (bytes, bytearray or
// any contiguous buffer).
gismo::ObjectId ParseId(py::handle obj) {
  if (py::isinstance<PyObjectId>(obj)) return obj.cast<const PyObjectId&>().id();
  if (PyBytes_Check(obj.ptr()) || PyByteArray_Check(obj.ptr()) || PyMemoryView_Check(obj.ptr())) {
    Py_buffer view;
    if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) {
      PyErr_Clear();
      throw py::type_error("an object id must be 20 contiguous bytes");
    }
    std::unique_ptr<Py_buffer, void (*)(Py_buffer*)> guard(&view, PyBuffer_Release);
    if (view.len != static_cast<Py_ssize_t>(gismo::ObjectId::kSize)) {
      ThrowInvalid("an object id is 20 bytes, got " + std::to_string(view.len));
    }
    return gismo::ObjectId::FromBytes(std::span<const uint8_t, gismo::ObjectId::kSize>(
        static_cast<const uint8_t*>(view.buf), gismo::ObjectId::kSize));
  }
  throw py::type_error("an object id must be a gismo.ObjectID or 20 bytes, not " +
                       std::string(Py_TYPE(obj.ptr())->tp_name));
}

// ----- bytes-like arguments ---------------------------------------------------

// A contiguous, read-only view of a bytes-like argument, held while in scope
// (a bytearray cannot be resized meanwhile, so the GIL may be released).
class BytesArg {
 public:
  // None stands for no bytes where `none_is_empty` (metadata); elsewhere
  // (an object's data) it is a TypeError like any other non-buffer.
  explicit BytesArg(py::handle obj, bool none_is_empty = false) {
    if (obj.is_none() && none_is_empty) return;
    // An exporter's own refusal (a released memoryview or gismo.Buffer: a
    // ValueError) says more than a TypeError would: it is kept. Only an
    // object that exports no buffer at all is a TypeError here.
    if (PyObject_CheckBuffer(obj.ptr()) == 0) {
      throw py::type_error(std::string("expected a contiguous bytes-like object, not ") +
                           Py_TYPE(obj.ptr())->tp_name);
    }
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_ANY_CONTIGUOUS) != 0) {
      throw py::error_already_set();  // e.g. ValueError: a released view; BufferError: strided
    }
    held_ = true;
  }
  BytesArg(const BytesArg&) = delete;
  BytesArg& operator=(const BytesArg&) = delete;
  ~BytesArg() {
    if (held_) PyBuffer_Release(&view_);
  }
  const void* data() const { return held_ ? view_.buf : nullptr; }
  size_t size() const { return held_ ? static_cast<size_t>(view_.len) : 0; }

 private:
  Py_buffer view_{};
  bool held_ = false;
};

// ----- the connection ----------------------------------------------------------

class Core {
 public:
  explicit Core(gismo_client_t* c) : c_(c), pid_(getpid()) {}
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;
  ~Core() {
    if (int fd = closed_fd_.load(std::memory_order_acquire); fd >= 0) close(fd);
    // A forked child shares the parent's socket: saying goodbye from it would
    // disconnect the parent.
    if (getpid() != pid_) return;
    WithoutGil([&] { return gismo_disconnect(c_); });
  }

  // The handle for a new operation; raises if the Client was closed or this is
  // a forked child.
  gismo_client_t* Checked() const {
    if (closed_.load(std::memory_order_acquire)) ThrowInvalid("the client is closed");
    if (getpid() != pid_) {
      ThrowInvalid("the client was connected by another process (pid " + std::to_string(pid_) +
                   "); connect again after fork");
    }
    return c_;
  }
  // The handle for releasing what was already taken; valid until ~Core.
  gismo_client_t* raw() const { return c_; }
  void MarkClosed() {
    // seq_cst, here and in ClosedFd: a store then a load of the other
    // variable on each side, so at least one side sees the other's store
    // and the fd is raised.
    closed_.store(true, std::memory_order_seq_cst);
    // A forked child shares the eventfd with its parent, whose client is
    // not closed: raised by the child, it would wake the parent's waits for
    // good, which then spin (they find nothing closed and poll again).
    if (!in_owner_process()) return;
    if (int fd = closed_fd_.load(std::memory_order_seq_cst); fd >= 0) Raise(fd);
  }
  // An eventfd that is readable once the Client is closed: waits poll it to
  // end at close() from another thread. Created by the first caller (with the
  // GIL held); open until ~Core.
  int ClosedFd() {
    if (closed_fd_.load(std::memory_order_acquire) < 0) {
      int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (fd < 0) throw StatusError(GISMO_ERR_IO, std::string("eventfd: ") + strerror(errno));
      closed_fd_.store(fd, std::memory_order_seq_cst);  // see MarkClosed
      if (closed_.load(std::memory_order_seq_cst)) Raise(fd);
    }
    return closed_fd_.load(std::memory_order_acquire);
  }
  // Makes an eventfd readable for good (it is never drained).
  static void Raise(int fd) {
    uint64_t one = 1;
    (void)!write(fd, &one, sizeof one);
  }
  bool closed() const { return closed_.load(std::memory_order_acquire); }
  bool in_owner_process() const { return getpid() == pid_; }

 private:
  gismo_client_t* const c_;
  const pid_t pid_;
  std::atomic<bool> closed_{false};
  std::atomic<int> closed_fd_{-1};
};

// ----- read-only buffers ---------------------------------------------------------

class PyBuffer {
 public:
  PyBuffer(std::shared_ptr<Core> core, const gismo::ObjectId& id, const gismo_buffer_t& buf)
      : core_(std::move(core)), id_(id), buf_(buf) {}
  PyBuffer(const PyBuffer&) = delete;
  PyBuffer& operator=(const PyBuffer&) = delete;
  ~PyBuffer() {
    // Exports hold a strong reference to the Python object, so none is left.
    (void)GiveBack();
  }

  // Gives the reference back now, or when the last export is released.
  void Release() {
    if (!held_ || release_requested_) return;
    release_requested_ = true;
    if (exports_ == 0) Check(GiveBack());
  }

  // In a child of fork(), the reference is the parent's, which the parent
  // may give back at any time (and the memory be reused): the child's copy
  // counts as released, and makes no new view.
  bool inherited() const { return held_ && !core_->in_owner_process(); }
  bool released() const { return !held_ || release_requested_ || inherited(); }
  const PyObjectId id() const { return PyObjectId(id_); }
  size_t size() const { return buf_.data_size; }
  uintptr_t address() const { return released() ? 0 : reinterpret_cast<uintptr_t>(buf_.data); }
  py::bytes metadata() const {
    RequireHeld();
    return py::bytes(static_cast<const char*>(buf_.metadata), buf_.metadata_size);
  }
  py::bytes ToBytes() const {
    RequireHeld();
    return py::bytes(static_cast<const char*>(buf_.data), buf_.data_size);
  }
  Py_ssize_t exports() const { return exports_; }

  static int GetBuffer(PyObject* self, Py_buffer* view, int flags) {
    view->obj = nullptr;
    PyBuffer* b = nullptr;
    try {
      b = py::handle(self).cast<PyBuffer*>();
    } catch (...) {
      PyErr_SetString(PyExc_BufferError, "not a gismo.Buffer");
      return -1;
    }
    if (b->inherited()) {
      PyErr_SetString(PyExc_BufferError,
                      "this gismo.Buffer is the parent process's (inherited through fork()), "
                      "which may release it at any time: get the object with a client of this "
                      "process");
      return -1;
    }
    if (b->released()) {
      PyErr_SetString(PyExc_BufferError, "the gismo.Buffer was released");
      return -1;
    }
    if ((flags & PyBUF_WRITABLE) == PyBUF_WRITABLE) {
      PyErr_SetString(PyExc_BufferError,
                      "a gismo.Buffer is read-only: sealed objects are immutable");
      return -1;
    }
    if (PyBuffer_FillInfo(view, self, const_cast<void*>(b->buf_.data),
                          static_cast<Py_ssize_t>(b->buf_.data_size), 1, flags) != 0) {
      return -1;
    }
    ++b->exports_;
    return 0;
  }

  static void ReleaseBuffer(PyObject* self, Py_buffer*) {
    PyBuffer* b = py::handle(self).cast<PyBuffer*>();
    if (--b->exports_ == 0 && b->release_requested_) (void)b->GiveBack();
  }

 private:
  void RequireHeld() const {
    if (inherited()) {
      ThrowInvalid("the gismo.Buffer of " + id_.Hex() +
                   " is the parent process's (inherited through fork()): get the object with a "
                   "client of this process");
    }
    if (released()) ThrowInvalid("the gismo.Buffer of " + id_.Hex() + " was released");
  }
  gismo_status_t GiveBack() noexcept {
    if (!held_) return GISMO_OK;
    held_ = false;
    std::shared_ptr<Core> core = std::move(core_);
    if (!core->in_owner_process()) return GISMO_OK;
    return WithoutGil([&] { return gismo_release(core->raw(), &id_.c_id()); });
  }

  std::shared_ptr<Core> core_;
  gismo::ObjectId id_;
  gismo_buffer_t buf_;
  bool held_ = true;
  bool release_requested_ = false;
  Py_ssize_t exports_ = 0;  // changed only with the GIL held
};

// The exporter behind the writable memoryview of create(): keeps the mapping
// alive; owns no reference (the creator's reference is released explicitly).
// It exports its bytes exactly once, to the view the client tracks and
// revokes at seal, abort or delete: memoryview(view.obj) would be a writable
// alias that outlives the object, so every later export is refused.
class WritableRegion {
 public:
  WritableRegion(std::shared_ptr<Core> core, void* data, size_t size)
      : core_(std::move(core)), data_(data), size_(size) {}

  static int GetBuffer(PyObject* self, Py_buffer* view, int flags) {
    view->obj = nullptr;
    WritableRegion* r = nullptr;
    try {
      r = py::handle(self).cast<WritableRegion*>();
    } catch (...) {
      PyErr_SetString(PyExc_BufferError, "not a create() buffer");
      return -1;
    }
    if (r->exported_) {
      PyErr_SetString(PyExc_BufferError,
                      "the create() buffer is exported only through the memoryview create() "
                      "returned; make views from that memoryview");
      return -1;
    }
    if (PyBuffer_FillInfo(view, self, r->data_, static_cast<Py_ssize_t>(r->size_), 0, flags) != 0) {
      return -1;
    }
    r->exported_ = true;
    return 0;
  }

 private:
  std::shared_ptr<Core> core_;
  void* data_;
  size_t size_;
  bool exported_ = false;  // changed only with the GIL held
};

// ----- the client ----------------------------------------------------------------

// As the C API checks it: the slices below pass it on only as a bound.
void CheckTimeout(int64_t timeout_ms) {
  if (timeout_ms < -1) {
    ThrowInvalid("timeout_ms must be -1 (forever), 0 or positive, got " +
                 std::to_string(timeout_ms));
  }
}

// The longest a blocking call runs without the GIL before signals (Ctrl-C)
// are checked.
constexpr int64_t kSignalSliceMs = 100;

// The next slice of a wait of timeout_ms (-1: never) begun at `start`: at
// most kSignalSliceMs, and 0 only once the time is up.
int64_t NextSliceMs(int64_t timeout_ms, std::chrono::steady_clock::time_point start) {
  if (timeout_ms < 0) return kSignalSliceMs;
  const int64_t spent = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - start)
                            .count();
  return std::clamp<int64_t>(timeout_ms - spent, 0, kSignalSliceMs);
}

// Runs attempt(slice_ms), a blocking C call, without the GIL in slices of at
// most kSignalSliceMs until done(status) or timeout_ms (-1: never) has
// passed, checking signals between slices (a raising handler ends the wait)
// and whether `core`'s Client was closed meanwhile (InvalidArgument: a
// close() from another thread ends the wait within a slice).
// Returns the last status; gismo_last_error() still belongs to it.
template <typename Attempt, typename Done>
gismo_status_t WaitInSlices(const Core& core, int64_t timeout_ms, Attempt&& attempt, Done&& done) {
  CheckTimeout(timeout_ms);
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const int64_t slice = NextSliceMs(timeout_ms, start);
    gismo_status_t s;
    {
      GilReleased nogil;
      s = attempt(slice);
    }
    if (done(s) || slice < kSignalSliceMs) return s;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (core.closed()) ThrowInvalid("the client was closed while this call waited");
  }
}

py::dict InfoDict(const gismo_object_info_t& info) {
  py::dict d;
  d["id"] = PyObjectId(gismo::ObjectId(info.id));
  d["state"] = gismo_state_name(info.state);
  d["size"] = info.data_size;
  d["metadata_size"] = info.metadata_size;
  d["refs"] = info.ref_count;
  d["node"] = info.creator_node;
  d["client"] = info.creator_client;
  d["created"] = static_cast<double>(info.create_time_ns) / 1e9;
  d["created_ns"] = info.create_time_ns;
  d["owned"] = (info.flags & GISMO_CREATE_OWNED) != 0;
  d["evictable"] = (info.flags & GISMO_CREATE_EVICTABLE) != 0;
  return d;
}

// A flag argument: True or False, numpy's bool, or the int 0 or 1. Anything
// else (a str, a list) is a TypeError of the binding's own, not its truth
// value ("no" would be true) nor pybind11's "incompatible function
// arguments".
bool FlagArg(py::handle value, const char* name) {
  if (PyBool_Check(value.ptr())) return value.ptr() == Py_True;
  const std::string type = Py_TYPE(value.ptr())->tp_name;
  if (type == "numpy.bool_" || type == "numpy.bool") return PyObject_IsTrue(value.ptr()) == 1;
  if (PyIndex_Check(value.ptr())) {
    const Py_ssize_t i = PyNumber_AsSsize_t(value.ptr(), nullptr);
    if (i == 0 || i == 1) return i == 1;
    PyErr_Clear();
  }
  throw py::type_error(std::string(name) + " must be a bool, not " + type);
}

uint32_t CreateFlags(py::handle owned, py::handle evictable) {
  return (FlagArg(owned, "owned") ? uint32_t{GISMO_CREATE_OWNED} : 0u) |
         (FlagArg(evictable, "evictable") ? uint32_t{GISMO_CREATE_EVICTABLE} : 0u);
}

// The bytes of a name given as a str (UTF-8, surrogateescape: what NameDict
// gives back for bytes that are not UTF-8) or bytes.
std::string NameBytes(py::handle obj);

// A name of the name table (NameBytes). The C API takes NUL-terminated
// names: a NUL byte is refused here, not cut off.
std::string NameBytes(py::handle obj) {
  if (PyUnicode_Check(obj.ptr())) {
    py::object b = py::reinterpret_steal<py::object>(
        PyUnicode_AsEncodedString(obj.ptr(), "utf-8", "surrogateescape"));
    if (!b) throw py::error_already_set();
    return b.cast<std::string>();
  }
  if (PyBytes_Check(obj.ptr())) return obj.cast<std::string>();
  throw py::type_error("a name must be a str or bytes, not " +
                       std::string(Py_TYPE(obj.ptr())->tp_name));
}

std::string ParseName(py::handle obj) {
  std::string name = NameBytes(obj);
  if (name.find('\0') != std::string::npos) ThrowInvalid("a name may not contain a NUL byte");
  return name;
}

py::dict NameDict(const gismo_name_info_t& info) {
  py::dict d;
  d["name"] = py::reinterpret_steal<py::object>(
      PyUnicode_DecodeUTF8(info.name, static_cast<Py_ssize_t>(info.name_size), "surrogateescape"));
  d["id"] = PyObjectId(gismo::ObjectId(info.id));
  d["version"] = info.version;
  d["bound"] = static_cast<double>(info.bind_time_ns) / 1e9;
  d["bound_ns"] = info.bind_time_ns;
  return d;
}

class PyClient {
 public:
  PyClient(std::optional<std::string> address, std::optional<std::string> key_file,
           std::optional<std::string> region_path) {
    for (const auto& [what, text] :
         {std::pair{"address", &address}, std::pair{"key_file", &key_file},
          std::pair{"region_path", &region_path}}) {
      if (*text && (*text)->find('\0') != std::string::npos) {
        ThrowInvalid(std::string(what) + " holds a NUL byte");
      }
    }
    gismo_client_t* c = nullptr;
    gismo_connect_options_t options{};
    options.address = address ? address->c_str() : nullptr;
    options.key_file = key_file ? key_file->c_str() : nullptr;
    options.region_path = region_path ? region_path->c_str() : nullptr;
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_connect_with_options(&options, &c);
    }
    Check(s);
    core_ = std::make_shared<Core>(c);
  }

  void Close() {
    if (!core_) return;
    // The client's unsealed objects are aborted: their views go too.
    for (auto& [hex, view] : create_views_) {
      try {
        view.attr("release")();
      } catch (py::error_already_set&) {
        // Arrays made from it keep the mapping alive (the exporter holds
        // the core); the object itself is aborted.
      }
    }
    create_views_.clear();
    creator_refs_.clear();
    core_->MarkClosed();
    core_.reset();  // disconnects unless Buffers or running calls still share it
  }
  bool closed() const { return !core_; }

  py::memoryview Create(py::handle id, py::handle size_arg, py::handle metadata, py::handle owned,
                        py::handle evictable) {
    auto core = Live();
    gismo::ObjectId oid = ParseId(id);
    const uint64_t size = CountArg(size_arg, "size", kMaxObjectSize);
    BytesArg meta(metadata, /*none_is_empty=*/true);
    void* data = nullptr;
    // Read with the GIL: a flag's __index__, an error raised.
    const uint32_t flags = CreateFlags(owned, evictable);
    gismo_client_t* c = core->Checked();
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_create_with_flags(c, &oid.c_id(), static_cast<size_t>(size), meta.data(),
                                  meta.size(), flags, &data);
    }
    Check(s);
    ++creator_refs_[oid.Hex()];
    py::object exporter = py::cast(WritableRegion(core, data, static_cast<size_t>(size)));
    py::memoryview view(exporter);
    // Released when the object is sealed, aborted or deleted: no writable
    // alias outlives the object's unsealed life (doc/security.md).
    create_views_[oid.Hex()] = view;
    return view;
  }

  void Put(py::handle id, py::handle data, py::handle metadata, py::handle owned,
           py::handle evictable) {
    auto core = Live();
    gismo::ObjectId oid = ParseId(id);
    BytesArg bytes(data), meta(metadata, /*none_is_empty=*/true);
    const uint32_t flags = CreateFlags(owned, evictable);  // with the GIL, as in Create
    gismo_client_t* c = core->Checked();
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_put_with_flags(c, &oid.c_id(), bytes.data(), bytes.size(), meta.data(), meta.size(),
                               flags);
    }
    Check(s);
  }

  // (Buffer, None) if the object is sealed, (None, writable view) if this
  // client created it to load it (gismo_get_or_create).
  py::tuple GetOrCreate(py::handle id, py::handle size_arg, py::handle metadata, py::handle owned,
                        py::handle evictable, int64_t timeout_ms) {
    auto core = Live();
    gismo::ObjectId oid = ParseId(id);
    const uint64_t size = CountArg(size_arg, "size", kMaxObjectSize);
    BytesArg meta(metadata, /*none_is_empty=*/true);
    gismo_buffer_t buf{};
    void* data = nullptr;
    gismo_client_t* c = core->Checked();
    const uint32_t flags = CreateFlags(owned, evictable);  // with the GIL, as in Create
    gismo_status_t s = WaitInSlices(
        *core, timeout_ms,
        [&](int64_t slice_ms) {
          return gismo_get_or_create(c, &oid.c_id(), static_cast<size_t>(size), meta.data(),
                                     meta.size(), flags, slice_ms, &buf, &data);
        },
        [](gismo_status_t s) { return s != GISMO_ERR_TIMEOUT; });
    Check(s);
    py::object none = py::reinterpret_borrow<py::object>(Py_None);
    if (data == nullptr) {
      return py::make_tuple(py::cast(std::make_unique<PyBuffer>(core, oid, buf)), none);
    }
    ++creator_refs_[oid.Hex()];
    py::object exporter = py::cast(WritableRegion(core, data, static_cast<size_t>(size)));
    py::memoryview view(exporter);
    create_views_[oid.Hex()] = view;
    return py::make_tuple(none, view);
  }

  uint64_t Evict(py::handle bytes_arg) {
    const uint64_t bytes = CountArg(bytes_arg, "bytes", UINT64_MAX);
    auto core = Live();
    uint64_t evicted = 0;
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_evict(core->Checked(), bytes, &evicted);
    }
    Check(s);
    return evicted;
  }
  void Touch(py::handle id) { IdCall(id, gismo_touch); }

  void Seal(py::handle id) {
    EndCreateView(ParseId(id), "sealing");
    IdCall(id, gismo_seal);
  }
  void Abort(py::handle id) {
    const gismo::ObjectId oid = ParseId(id);
    EndCreateView(oid, "aborting");
    // The abort takes the creator's reference. Forgotten before the call
    // (while the GIL is released another thread may create the id anew and
    // count its own reference), put back if the call fails.
    uint64_t taken = 0;
    if (auto it = creator_refs_.find(oid.Hex()); it != creator_refs_.end()) {
      taken = it->second;
      creator_refs_.erase(it);
    }
    auto core = Live();
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_abort(core->Checked(), &oid.c_id());
    }
    if (s != GISMO_OK && taken != 0) creator_refs_[oid.Hex()] += taken;
    Check(s);
  }
  // Gives back a reference this client took by create() or get_or_create()
  // (the loader's). Never one a Buffer counts on: releasing that would let
  // the object be freed under the Buffer's memory.
  void Release(py::handle id) {
    const gismo::ObjectId oid = ParseId(id);
    auto it = creator_refs_.find(oid.Hex());
    if (it == creator_refs_.end()) {
      // Not found only if it is not there in any state (deleting, or
      // another client's unsealed object, is there: not held).
      auto core = Live();
      gismo_object_info_t info{};
      gismo_status_t st;
      {
        GilReleased nogil;
        st = gismo_stat(core->Checked(), &oid.c_id(), &info);
      }
      if (st == GISMO_ERR_OBJECT_NOT_FOUND) {
        throw StatusError(GISMO_ERR_OBJECT_NOT_FOUND, "object " + oid.Hex() + " does not exist");
      }
      Check(st);
      throw StatusError(GISMO_ERR_NOT_HELD,
                        "this client holds no reference to " + oid.Hex() +
                            " of its own (from create or get_or_create); a Buffer's reference "
                            "is given back by Buffer.release() or when it is garbage");
    }
    // Taken before the call (two threads must not both give back the one
    // reference), put back if the call fails while the reference stands
    // (not sealed yet, say); one the store no longer has is forgotten.
    if (--it->second == 0) creator_refs_.erase(it);
    auto core = Live();
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_release(core->Checked(), &oid.c_id());
    }
    if (s != GISMO_OK && s != GISMO_ERR_OBJECT_NOT_FOUND && s != GISMO_ERR_NOT_HELD) {
      ++creator_refs_[oid.Hex()];
    }
    Check(s);
  }
  // The create() view stays: the store deletes no unsealed object (its
  // creator still fills it), and a sealed one has no view left.
  void Delete(py::handle id) { IdCall(id, gismo_delete); }

  bool Contains(py::handle id) {
    auto core = Live();
    gismo::ObjectId oid = ParseId(id);
    bool contains = false;
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_contains(core->Checked(), &oid.c_id(), &contains);
    }
    Check(s);
    return contains;
  }

  // One Buffer per id, None where the object was not sealed in time.
  py::list GetMany(py::iterable ids, int64_t timeout_ms) {
    auto core = Live();
    std::vector<gismo::ObjectId> oids;
    for (py::handle h : ids) oids.push_back(ParseId(h));
    std::vector<gismo_id_t> cids(oids.size());
    for (size_t i = 0; i < oids.size(); ++i) cids[i] = oids[i].c_id();
    gismo_client_t* c = core->Checked();
    // Each taken reference is owned by a PyBuffer before anything can throw.
    std::vector<std::unique_ptr<PyBuffer>> owned(oids.size());
    std::vector<size_t> missing(oids.size());  // indices not got yet
    for (size_t i = 0; i < missing.size(); ++i) missing[i] = i;
    std::vector<gismo_buffer_t> bufs;
    gismo_status_t s = WaitInSlices(
        *core, timeout_ms,
        [&](int64_t slice_ms) {
          bufs.assign(cids.size(), gismo_buffer_t{});
          return gismo_get(c, cids.data(), cids.size(), slice_ms, bufs.data());
        },
        [&](gismo_status_t s) {
          if (s != GISMO_OK) return true;
          std::vector<size_t> still;
          std::vector<gismo_id_t> still_ids;
          for (size_t j = 0; j < missing.size(); ++j) {
            const size_t i = missing[j];
            if (bufs[j].data) {
              owned[i] = std::make_unique<PyBuffer>(core, oids[i], bufs[j]);
            } else {
              still.push_back(i);
              still_ids.push_back(cids[j]);
            }
          }
          missing = std::move(still);
          cids = std::move(still_ids);
          return missing.empty();
        });
    Check(s);
    py::list out(oids.size());
    for (size_t i = 0; i < oids.size(); ++i) {
      out[i] =
          owned[i] ? py::cast(std::move(owned[i])) : py::reinterpret_borrow<py::object>(Py_None);
    }
    return out;
  }

  // The Buffer of one object; Timeout if it was not sealed in time.
  py::object GetOne(py::handle id, int64_t timeout_ms) {
    auto core = Live();
    gismo::ObjectId oid = ParseId(id);
    gismo_buffer_t buf{};
    gismo_client_t* c = core->Checked();
    gismo_status_t s = WaitInSlices(
        *core, timeout_ms,
        [&](int64_t slice_ms) { return gismo_get(c, &oid.c_id(), 1, slice_ms, &buf); },
        [&](gismo_status_t s) { return s != GISMO_OK || buf.data != nullptr; });
    Check(s);
    if (!buf.data) {
      // A stat, which may wait on a shard lock: without the GIL.
      gismo_client_t* live = core->Checked();
      gismo::Status why;
      {
        GilReleased nogil;
        why = gismo::detail::NotSealed(live, oid.c_id(), oid.Hex(), timeout_ms);
      }
      throw StatusError(why.code(), why.message());
    }
    return py::cast(std::make_unique<PyBuffer>(core, oid, buf));
  }

  py::dict Stat(py::handle id) {
    auto core = Live();
    gismo::ObjectId oid = ParseId(id);
    gismo_object_info_t info{};
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_stat(core->Checked(), &oid.c_id(), &info);
    }
    Check(s);
    return InfoDict(info);
  }

  void BindName(py::handle name, py::handle id) {
    auto core = Live();
    const std::string n = ParseName(name);
    const gismo::ObjectId oid = ParseId(id);
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_bind_name(core->Checked(), n.c_str(), &oid.c_id());
    }
    Check(s);
  }

  // expected None: only if the name is unbound.
  void SwapName(py::handle name, py::handle expected, py::handle desired) {
    auto core = Live();
    const std::string n = ParseName(name);
    std::optional<gismo::ObjectId> old;
    if (!expected.is_none()) old = ParseId(expected);
    const gismo::ObjectId oid = ParseId(desired);
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_swap_name(core->Checked(), n.c_str(), old ? &old->c_id() : nullptr, &oid.c_id());
    }
    Check(s);
  }

  void UnbindName(py::handle name, py::handle expected) {
    auto core = Live();
    const std::string n = ParseName(name);
    std::optional<gismo::ObjectId> old;
    if (!expected.is_none()) old = ParseId(expected);
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_unbind_name(core->Checked(), n.c_str(), old ? &old->c_id() : nullptr);
    }
    Check(s);
  }

  py::dict LookupName(py::handle name) {
    auto core = Live();
    const std::string n = ParseName(name);
    gismo_name_info_t info{};
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_lookup_name(core->Checked(), n.c_str(), &info);
    }
    Check(s);
    return NameDict(info);
  }

  // known None: until the name is bound at all.
  py::dict WaitName(py::handle name, py::handle known, int64_t timeout_ms) {
    auto core = Live();
    const std::string n = ParseName(name);
    std::optional<gismo::ObjectId> old;
    if (!known.is_none()) old = ParseId(known);
    gismo_name_info_t info{};
    gismo_client_t* c = core->Checked();
    gismo_status_t s = WaitInSlices(
        *core, timeout_ms,
        [&](int64_t slice_ms) {
          return gismo_wait_name(c, n.c_str(), old ? &old->c_id() : nullptr, slice_ms, &info);
        },
        [](gismo_status_t s) { return s != GISMO_ERR_TIMEOUT; });
    Check(s);
    return NameDict(info);
  }

  py::list ListNames(py::handle prefix) {
    auto core = Live();
    const std::string p = prefix.is_none() ? std::string() : ParseName(prefix);
    std::vector<gismo_name_info_t> infos;
    gismo_status_t s = GISMO_OK;
    {
      GilReleased nogil;
      gismo_client_t* c = core->Checked();
      for (;;) {
        size_t count = 0;
        if ((s = gismo_list_names(c, p.c_str(), nullptr, 0, &count)) != GISMO_OK) break;
        infos.resize(count + count / 8 + 16);
        if ((s = gismo_list_names(c, p.c_str(), infos.data(), infos.size(), &count)) != GISMO_OK) {
          break;
        }
        if (count <= infos.size()) {
          infos.resize(count);
          break;
        }
      }
    }
    Check(s);
    py::list out;
    for (const auto& info : infos) out.append(NameDict(info));
    return out;
  }

  py::list List() {
    auto core = Live();
    std::vector<gismo_object_info_t> infos;
    gismo_status_t s = GISMO_OK;
    {
      GilReleased nogil;
      gismo_client_t* c = core->Checked();
      for (;;) {
        size_t count = 0;
        if ((s = gismo_list(c, nullptr, 0, &count)) != GISMO_OK) break;
        infos.resize(count + count / 8 + 16);
        if ((s = gismo_list(c, infos.data(), infos.size(), &count)) != GISMO_OK) break;
        if (count <= infos.size()) {
          infos.resize(count);
          break;
        }
      }
    }
    Check(s);
    py::list out;
    for (const auto& info : infos) out.append(InfoDict(info));
    return out;
  }

  py::dict Usage() {
    auto core = Live();
    gismo_usage_t u{};
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_usage(core->Checked(), &u);
    }
    Check(s);
    py::dict d;
    d["capacity_bytes"] = u.capacity_bytes;
    d["used_bytes"] = u.used_bytes;
    d["free_bytes"] = u.free_bytes;
    d["largest_free_bytes"] = u.largest_free_bytes;
    d["object_count"] = u.object_count;
    d["sealed_count"] = u.sealed_count;
    d["unsealed_count"] = u.unsealed_count;
    d["deleting_count"] = u.deleting_count;
    d["max_objects"] = u.max_objects;
    d["client_count"] = u.client_count;
    d["max_clients"] = u.max_clients;
    d["region_size"] = u.region_size;
    d["manager_start_time_ns"] = u.manager_start_time_ns;
    d["manager_heartbeat_ns"] = u.manager_heartbeat_ns;
    d["manager_epoch"] = u.manager_epoch;
    d["format_time_ns"] = u.format_time_ns;
    d["region_uuid"] = gismo::RegionUuidHex(u);
    d["format_version"] = u.format_version;
    d["coherence_mode"] = u.coherence_mode;
    d["evictions"] = u.evictions;
    d["evicted_bytes"] = u.evicted_bytes;
    d["durable"] = (u.region_features & GISMO_FEATURE_DURABLE) != 0;
    return d;
  }

  py::list ListClients() {
    auto core = Live();
    std::vector<gismo_client_info_t> infos;
    gismo_status_t s = GISMO_OK;
    {
      GilReleased nogil;
      gismo_client_t* c = core->Checked();
      size_t count = 0;
      if ((s = gismo_list_clients(c, nullptr, 0, &count)) == GISMO_OK) {
        infos.resize(count + 8);
        s = gismo_list_clients(c, infos.data(), infos.size(), &count);
        infos.resize(std::min(count, infos.size()));
      }
    }
    Check(s);
    py::list out;
    for (const auto& i : infos) {
      py::dict d;
      d["client"] = i.client;
      d["node"] = i.node;
      d["client_id"] = i.client_id;
      d["pid"] = i.pid;
      d["connected"] = static_cast<double>(i.connect_time_ns) / 1e9;
      d["held_objects"] = i.held_objects;
      out.append(d);
    }
    return out;
  }

  // (node, slot).
  std::pair<uint32_t, uint32_t> Identity() {
    auto core = Live();
    uint32_t node = 0, slot = 0;
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_client_identity(core->Checked(), &node, &slot);
    }
    Check(s);
    return {node, slot};
  }

  // A share of the connection for an object that outlives this call (a
  // Subscription); raises if the client is closed.
  std::shared_ptr<Core> Share() const { return Live(); }

  std::pair<uintptr_t, size_t> RegionMapping() { return View(gismo_region_mapping); }
  std::pair<uintptr_t, size_t> RegionReadView() { return View(gismo_region_read_view); }

 private:
  using ViewFn = gismo_status_t (*)(gismo_client_t*, const void**, size_t*);
  std::pair<uintptr_t, size_t> View(ViewFn fn) {
    auto core = Live();
    const void* base = nullptr;
    size_t size = 0;
    Check(fn(core->Checked(), &base, &size));
    return {reinterpret_cast<uintptr_t>(base), size};
  }
  // A share of the connection for the duration of one call: close() from
  // another thread defers the disconnect until the call returns.
  std::shared_ptr<Core> Live() const {
    if (!core_) ThrowInvalid("the client is closed");
    return core_;
  }
  // Releases the memoryview create() returned for `oid`, if any: using it
  // raises ValueError from now on. Views or arrays made from it would keep
  // a writable pointer: then nothing is done and ObjectInUse is raised.
  void EndCreateView(const gismo::ObjectId& oid, const char* doing) {
    auto it = create_views_.find(oid.Hex());
    if (it == create_views_.end()) return;
    auto in_use = [&] {
      return StatusError(GISMO_ERR_OBJECT_IN_USE,
                         "arrays or views made from the create() buffer of " + oid.Hex() +
                             " are alive; delete them before " + doing +
                             " (they would stay writable)");
    };
    // Views made from it (numpy arrays hold one) share its managed buffer
    // (CPython's memoryobject.h); releasing it alone would leave them
    // writable. It counts itself among the exports unless the user
    // released it already (the views made from it live on then).
    const auto* mv = reinterpret_cast<const PyMemoryViewObject*>(it->second.ptr());
    const Py_ssize_t own = (mv->flags & _Py_MEMORYVIEW_RELEASED) != 0 ? 0 : 1;
    if (mv->mbuf != nullptr && mv->mbuf->exports > own) throw in_use();
    try {
      it->second.attr("release")();  // BufferError: buffers taken from it directly
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_BufferError)) throw;
      throw in_use();
    }
    create_views_.erase(it);
  }

  void IdCall(py::handle id, gismo_status_t (*fn)(gismo_client_t*, const gismo_id_t*)) {
    auto core = Live();
    gismo::ObjectId oid = ParseId(id);
    gismo_status_t s;
    {
      GilReleased nogil;
      s = fn(core->Checked(), &oid.c_id());
    }
    Check(s);
  }

  std::shared_ptr<Core> core_;  // null once closed; accessed with the GIL held
  // The create() views of objects not yet sealed, aborted or deleted, by
  // id (hex); accessed with the GIL held.
  std::map<std::string, py::object> create_views_;
  // References taken by create() and get_or_create() (the loader's) and
  // not yet given back, by id (hex): release(id) gives back only these.
  // Accessed with the GIL held.
  std::map<std::string, uint64_t> creator_refs_;
};

// ----- notifications ---------------------------------------------------------------

// A client's subscription (gismo_subscribe). Shares the connection like a
// Buffer does, so its fd stays open while the object lives. A wait polls the
// library's fd, this subscription's closed fd and the client's closed fd, in
// slices of kSignalSliceMs: close() from another thread ends it at once, and
// signals (Ctrl-C) and a lost connection are noticed within a slice.
class PySubscription {
 public:
  explicit PySubscription(const PyClient& client) : core_(client.Share()) {
    int fd = -1;
    gismo_status_t s;
    {
      GilReleased nogil;
      s = gismo_subscribe(core_->Checked(), &fd);
      if (s != GISMO_OK) ThrowStatus(s);  // reads the detail on this thread
    }
    fd_ = fd;
    client_closed_fd_ = core_->ClosedFd();
    closed_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (closed_fd_ < 0) throw StatusError(GISMO_ERR_IO, std::string("eventfd: ") + strerror(errno));
  }
  PySubscription(const PySubscription&) = delete;
  PySubscription& operator=(const PySubscription&) = delete;
  // No wait is running: each holds a reference to the Python object.
  ~PySubscription() {
    if (closed_fd_ >= 0) close(closed_fd_);
  }

  int FileNo() const {
    Live();
    return fd_;
  }

  // (event, id or None, data_size, metadata_size, node, seq, reason), or raises
  // Timeout after timeout_ms (-1: never).
  py::tuple Next(int64_t timeout_ms) {
    CheckTimeout(timeout_ms);
    std::shared_ptr<Core> core = Live();
    gismo_client_t* c = core->Checked();
    const auto start = std::chrono::steady_clock::now();
    gismo_notification_t n{};
    for (;;) {
      gismo_status_t s = GISMO_ERR_TIMEOUT;
      std::string detail;
      bool interrupted = false;  // EINTR or a slice ended: check signals
      {
        GilReleased nogil;
        for (;;) {
          s = gismo_next_notification(c, &n, 0);
          if (s != GISMO_ERR_TIMEOUT) {
            if (s != GISMO_OK) detail = gismo_last_error();
            break;
          }
          if (closed_.load(std::memory_order_acquire) || core->closed()) break;
          const int64_t wait_ms = NextSliceMs(timeout_ms, start);
          if (wait_ms == 0) break;
          pollfd p[3] = {{fd_, POLLIN, 0}, {closed_fd_, POLLIN, 0}, {client_closed_fd_, POLLIN, 0}};
          int rc = poll(p, 3, static_cast<int>(wait_ms));
          if (rc < 0 && errno != EINTR) {
            s = GISMO_ERR_IO;
            detail = std::string("poll: ") + strerror(errno);
            break;
          }
          if (rc <= 0) {
            interrupted = true;
            break;
          }
        }
      }
      if (s == GISMO_OK) return ToTuple(n);
      if (s != GISMO_ERR_TIMEOUT) {
        throw StatusError(s, detail.empty() ? gismo_status_message(s) : detail);
      }
      if (closed_.load(std::memory_order_acquire)) ThrowInvalid("the subscription is closed");
      core->Checked();  // raises if the client was closed meanwhile
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      if (!interrupted) {
        throw StatusError(GISMO_ERR_TIMEOUT,
                          "no notification within " + std::to_string(timeout_ms) + " ms");
      }
    }
  }

  // Ends the subscription for this object: waits in other threads return,
  // later calls raise, and its share of the connection is dropped.
  void Close() {
    if (closed_.exchange(true, std::memory_order_acq_rel)) return;
    // Not in a forked child: the eventfd is its parent's too (Core::MarkClosed).
    // core_ is set until below, and made in the process that subscribed.
    if (core_->in_owner_process()) Core::Raise(closed_fd_);
    core_.reset();
  }
  bool closed() const {
    return closed_.load(std::memory_order_acquire) || !core_ || core_->closed();
  }

 private:
  std::shared_ptr<Core> Live() const {
    if (closed_.load(std::memory_order_acquire) || !core_)
      ThrowInvalid("the subscription is closed");
    if (core_->closed()) ThrowInvalid("the client is closed");
    return core_;
  }
  static py::tuple ToTuple(const gismo_notification_t& n) {
    py::object id =
        n.event == GISMO_EVENT_OVERFLOW ? py::none() : py::cast(PyObjectId(gismo::ObjectId(n.id)));
    return py::make_tuple(n.event, id, n.data_size, n.metadata_size, n.node, n.seq, n.reason);
  }

  std::shared_ptr<Core> core_;  // null once closed; changed with the GIL held
  int fd_ = -1;                 // the library's; open while core_'s client is
  int client_closed_fd_ = -1;   // Core::ClosedFd(), open while core_ lives
  int closed_fd_ = -1;          // raised by Close()
  std::atomic<bool> closed_{false};
};

// ----- construction ------------------------------------------------------------------

// pybind11 gives an instance made by Type.__new__(Type) uninitialised storage
// that its methods would use as the C++ object. Every binding class defines a
// __new__ that refuses that: a class without a constructor always (its
// instances are made in C++, which does not call __new__), and a class with
// one outside a call of the class itself, Type(...), which runs its __init__
// (the metaclass marks that call).
thread_local PyObject* constructing = nullptr;  // the class Type(...) is making
ternaryfunc base_metaclass_call = nullptr;      // pybind11's metaclass call

PyObject* MarkingMetaclassCall(PyObject* type, PyObject* args, PyObject* kwargs) {
  PyObject* outer = constructing;
  constructing = type;
  PyObject* made = base_metaclass_call(type, args, kwargs);
  constructing = outer;
  return made;
}

// pybind11's metaclass, but calling a class marks it as being constructed.
py::handle ConstructingMetaclass() {
  static PyObject* meta = [] {
    auto* base = reinterpret_cast<PyObject*>(py::detail::get_internals().default_metaclass);
    py::dict attrs;
    attrs["__module__"] = "gismo._gismo";
    py::object m = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyType_Type))(
        "gismo_type", py::make_tuple(py::handle(base)), attrs);
    base_metaclass_call = reinterpret_cast<PyTypeObject*>(base)->tp_call;
    reinterpret_cast<PyTypeObject*>(m.ptr())->tp_call = &MarkingMetaclassCall;
    PyType_Modified(reinterpret_cast<PyTypeObject*>(m.ptr()));
    return m.release().ptr();  // lives as long as the process
  }();
  return meta;
}

// Type.__new__ of a binding class; has_constructor: Type(...) makes one.
template <typename Class>
void GuardNew(py::class_<Class>& cls, bool has_constructor) {
  cls.def_static("__new__", [has_constructor](py::handle type, py::args, py::kwargs) -> py::object {
    auto* t = reinterpret_cast<PyTypeObject*>(type.ptr());
    if (!has_constructor) {
      throw py::type_error(std::string(t->tp_name) +
                           " objects are made by gismo calls, not by __new__()");
    }
    if (constructing != type.ptr()) {
      throw py::type_error(std::string(t->tp_name) + ".__new__() alone makes an unusable " +
                           "object; call " + t->tp_name + "(...) to construct one");
    }
    constructing = nullptr;  // the outermost __new__ only
    return py::reinterpret_steal<py::object>(py::detail::pybind11_object_new(t, nullptr, nullptr));
  });
}

void InstallBufferProcs(py::handle type, getbufferproc get, releasebufferproc release) {
  auto* heap = reinterpret_cast<PyHeapTypeObject*>(type.ptr());
  heap->as_buffer.bf_getbuffer = get;
  heap->as_buffer.bf_releasebuffer = release;
  reinterpret_cast<PyTypeObject*>(type.ptr())->tp_as_buffer = &heap->as_buffer;
}

// An ObjectID comparison: NotImplemented for another type, so that Python
// raises its own TypeError ("'<' not supported between instances of ...").
template <typename Less>
auto Ordering(Less less) {
  return [less](const PyObjectId& a, py::handle b) -> py::object {
    if (!py::isinstance<PyObjectId>(b)) {
      return py::reinterpret_borrow<py::object>(Py_NotImplemented);
    }
    return py::bool_(less(a.id(), b.cast<const PyObjectId&>().id()));
  };
}

}  // namespace

PYBIND11_MODULE(_gismo, m) {
  m.doc() = "gismo shared-memory object store: the C API for Python (use the gismo package)";
  m.attr("__version__") = gismo_version();
  m.attr("ID_SIZE") = GISMO_ID_SIZE;

  py::enum_<gismo_status_t> status(m, "Status",
                                   "The status codes of gismo.h (listed in gismo/status_codes.h).");
#define GISMO_PY_STATUS_VALUE_(name, short_name, number, message, py_class, py_base) \
  status.value(#short_name, name);
  GISMO_STATUS_CODES(GISMO_PY_STATUS_VALUE_)
#undef GISMO_PY_STATUS_VALUE_

  // gismo.errors makes one exception class of each: (status, class name,
  // builtin base class name or "", message), every code but OK.
  py::list error_classes;
#define GISMO_PY_ERROR_CLASS_(name, short_name, value, message, py_class, py_base) \
  if (name != GISMO_OK) error_classes.append(py::make_tuple(name, py_class, py_base, message));
  GISMO_STATUS_CODES(GISMO_PY_ERROR_CLASS_)
#undef GISMO_PY_ERROR_CLASS_
  m.attr("ERROR_CLASSES") = py::tuple(error_classes);

  py::enum_<gismo_event_t>(m, "Event", "What a notification reports (gismo_event_t).")
      .value("SEALED", GISMO_EVENT_SEALED)
      .value("DELETED", GISMO_EVENT_DELETED)
      .value("OVERFLOW", GISMO_EVENT_OVERFLOW);

  m.def(
      "status_message",
      [](int code) { return std::string(gismo_status_message(static_cast<gismo_status_t>(code))); },
      py::arg("status"), "The generic description of a status code.");
  m.def(
      "_checkpoint_checksum",
      [](py::handle data) {
        BytesArg bytes(data);
        return gismo::checkpoint::Checksum(bytes.data(), bytes.size());
      },
      py::arg("data"), "The checksum of checkpoint chunks and manifests (gismo/checkpoint.hpp).");
  m.def(
      "_register_errors", [](py::dict classes) { ErrorClasses() = classes; },
      "Sets the exception class of each status code (gismo.errors does).");
  m.def(
      "_raise_status",
      [](int code, const std::string& detail) {
        throw StatusError(static_cast<gismo_status_t>(code), detail);
      },
      py::arg("status"), py::arg("detail"),
      "Raises what a call failing with this status raises (for tests).");

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      py::dict& classes = ErrorClasses();
      py::int_ key(static_cast<int>(e.code()));
      py::object cls = classes.contains(key)
                           ? classes[key]
                           : py::reinterpret_borrow<py::object>(PyExc_RuntimeError);
      // The message may quote bytes that are not UTF-8 (a name): decoded
      // with backslash escapes, never a UnicodeDecodeError in place of the
      // error.
      const char* what = e.what();
      py::object message = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(
          what, static_cast<Py_ssize_t>(std::strlen(what)), "backslashreplace"));
      if (!message) {
        PyErr_Clear();
        message = py::str("(an error whose message could not be decoded)");
      }
      py::object exc =
          classes.contains(key) ? cls(message, static_cast<int>(e.code())) : cls(message);
      PyErr_SetObject(cls.ptr(), exc.ptr());
    }
  });

  py::class_<PyObjectId> object_id(m, "ObjectID",
                                   "A 20-byte object id. Hashable, picklable, ordered; functions "
                                   "that take an id also take 20 raw bytes.",
                                   py::metaclass(ConstructingMetaclass()));
  GuardNew(object_id, /*has_constructor=*/true);
  object_id
      .def(py::init([](py::handle b) { return PyObjectId(ParseId(b)); }), py::arg("id"),
           "From 20 bytes (bytes, bytearray, memoryview) or another ObjectID.")
      .def_static(
          "random", [] { return PyObjectId(gismo::ObjectId::Random()); }, "A random id.")
      .def_static(
          "from_name",
          [](py::handle name) { return PyObjectId(gismo::ObjectId::FromName(NameBytes(name))); },
          py::arg("name"),
          "A stable id derived from a name (a str, as UTF-8, or bytes), equal to C++ "
          "gismo::ObjectId::FromName.")
      .def_static(
          "from_hex",
          [](py::handle text) {
            if (!PyUnicode_Check(text.ptr()) && !PyBytes_Check(text.ptr())) {
              throw py::type_error("a hex id must be a str (or bytes) of 40 hex digits, not " +
                                   std::string(Py_TYPE(text.ptr())->tp_name));
            }
            auto r = gismo::ObjectId::FromHex(text.cast<std::string>());
            if (!r.ok()) ThrowInvalid(r.status().message());
            return PyObjectId(*r);
          },
          py::arg("hex"), "From exactly 40 hex digits.")
      .def("hex", [](const PyObjectId& o) { return o.id().Hex(); })
      .def_property_readonly("binary", &PyObjectId::Bytes, "The 20 bytes.")
      .def("__bytes__", &PyObjectId::Bytes)
      .def("__str__", [](const PyObjectId& o) { return o.id().Hex(); })
      .def("__repr__", [](const PyObjectId& o) { return "ObjectID('" + o.id().Hex() + "')"; })
      .def("__hash__",
           [](const PyObjectId& o) {
             Py_hash_t h;
             std::memcpy(&h, o.id().data(), sizeof(h));
             return h == -1 ? Py_hash_t{-2} : h;
           })
      .def("__eq__",
           [](const PyObjectId& a, py::handle b) -> py::object {
             if (!py::isinstance<PyObjectId>(b))
               return py::reinterpret_borrow<py::object>(Py_NotImplemented);
             return py::bool_(a.id() == b.cast<const PyObjectId&>().id());
           })
      .def("__lt__", Ordering([](const auto& a, const auto& b) { return a < b; }))
      .def("__le__", Ordering([](const auto& a, const auto& b) { return !(b < a); }))
      .def("__gt__", Ordering([](const auto& a, const auto& b) { return b < a; }))
      .def("__ge__", Ordering([](const auto& a, const auto& b) { return !(a < b); }))
      .def("__reduce__", [](py::object self) {
        // Works for every pickle protocol: ObjectID(bytes).
        return py::make_tuple(py::type::of(self),
                              py::make_tuple(self.cast<const PyObjectId&>().Bytes()));
      });

  py::class_<PyBuffer> buffer(
      m, "Buffer", py::buffer_protocol(),
      "A sealed object held by this client: read-only bytes in the shared region, exported "
      "through the buffer protocol without a copy. Holds one reference until release() or "
      "garbage collection, and in any case until the last memoryview/array made from it is "
      "gone.");
  buffer.def_property_readonly("id", &PyBuffer::id)
      .def_property_readonly("size", &PyBuffer::size)
      .def("__len__", &PyBuffer::size)
      .def_property_readonly("metadata", &PyBuffer::metadata, "A copy of the metadata.")
      .def_property_readonly("address", &PyBuffer::address,
                             "Address of the data in this process (0 once released).")
      .def_property_readonly("released", &PyBuffer::released)
      .def_property_readonly("_exports", &PyBuffer::exports)
      .def("tobytes", &PyBuffer::ToBytes, "A copy of the data.")
      .def("release", &PyBuffer::Release,
           "Gives the reference back now, or when the last view made from the buffer is gone. "
           "Idempotent.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyBuffer& b, py::args) { b.Release(); })
      .def("__repr__", [](const PyBuffer& b) {
        return "<gismo.Buffer " + b.id().id().Hex() + " size=" + std::to_string(b.size()) +
               (b.released() ? " released>" : ">");
      });
  InstallBufferProcs(buffer, &PyBuffer::GetBuffer, &PyBuffer::ReleaseBuffer);
  GuardNew(buffer, /*has_constructor=*/false);

  py::class_<WritableRegion> writable(m, "_WritableRegion", py::buffer_protocol());
  InstallBufferProcs(writable, &WritableRegion::GetBuffer, nullptr);
  GuardNew(writable, /*has_constructor=*/false);

  py::class_<PyClient> client(m, "_Client", py::metaclass(ConstructingMetaclass()));
  GuardNew(client, /*has_constructor=*/true);
  client
      .def(py::init<std::optional<std::string>, std::optional<std::string>,
                    std::optional<std::string>>(),
           py::arg("address") = py::none(), py::arg("key_file") = py::none(),
           py::arg("region_path") = py::none())
      .def("close", &PyClient::Close)
      .def_property_readonly("closed", &PyClient::closed)
      .def("create", &PyClient::Create, py::arg("id"), py::arg("size"),
           py::arg("metadata") = py::bytes(), py::kw_only(), py::arg("owned") = false,
           py::arg("evictable") = false,
           "A writable memoryview of a new object of `size` bytes: fill it, then seal(id). "
           "Fill it through np.frombuffer(view, dtype), which seal and abort see; not "
           "np.ndarray(buffer=view), which keeps a bare pointer (it would stay writable).")
      .def("put", &PyClient::Put, py::arg("id"), py::arg("data"), py::arg("metadata") = py::bytes(),
           py::kw_only(), py::arg("owned") = false, py::arg("evictable") = false)
      .def("_get_or_create", &PyClient::GetOrCreate, py::arg("id"), py::arg("size"),
           py::arg("metadata"), py::arg("owned"), py::arg("evictable"), py::arg("timeout_ms"))
      .def("evict", &PyClient::Evict, py::arg("bytes"),
           "Evicts evictable objects nobody holds, least recently used first, until `bytes` "
           "are evicted (or none is left), whatever is free already; returns the bytes "
           "evicted.")
      .def("touch", &PyClient::Touch, py::arg("id"),
           "Marks an evictable object as recently used, as a get does.")
      .def("seal", &PyClient::Seal, py::arg("id"))
      .def("abort", &PyClient::Abort, py::arg("id"))
      .def("release", &PyClient::Release, py::arg("id"))
      .def("delete", &PyClient::Delete, py::arg("id"))
      .def("contains", &PyClient::Contains, py::arg("id"))
      .def("_get_many", &PyClient::GetMany, py::arg("ids"), py::arg("timeout_ms"))
      .def("_get_one", &PyClient::GetOne, py::arg("id"), py::arg("timeout_ms"))
      .def("stat", &PyClient::Stat, py::arg("id"))
      .def("list", &PyClient::List)
      .def("bind_name", &PyClient::BindName, py::arg("name"), py::arg("id"),
           "Binds the name (str or bytes) to the sealed object id, whatever it was bound to.")
      .def("swap_name", &PyClient::SwapName, py::arg("name"), py::arg("expected"),
           py::arg("desired"),
           "Binds the name to `desired` only if it is bound to `expected` now (None: only if "
           "it is unbound); raises Conflict otherwise.")
      .def("unbind_name", &PyClient::UnbindName, py::arg("name"), py::arg("expected") = py::none(),
           "Unbinds the name (with `expected`: only if bound to it, else Conflict).")
      .def("lookup_name", &PyClient::LookupName, py::arg("name"),
           "{name, id, version, bound, bound_ns}; ObjectNotFound if the name is not bound.")
      .def("_wait_name", &PyClient::WaitName, py::arg("name"), py::arg("known"),
           py::arg("timeout_ms"))
      .def("list_names", &PyClient::ListNames, py::arg("prefix") = py::none(),
           "Every binding whose name starts with `prefix`, as lookup_name gives them.")
      .def("usage", &PyClient::Usage)
      .def("list_clients", &PyClient::ListClients)
      .def("_identity", &PyClient::Identity)
      .def("region_mapping", &PyClient::RegionMapping,
           "(base address, size) of this client's writable mapping of the region: create()'s "
           "views lie in it.")
      .def("region_read_view", &PyClient::RegionReadView,
           "(base address, size) of this client's read-only view of the region: get()'s "
           "buffers lie in it.");

  py::class_<PySubscription> subscription(m, "_Subscription",
                                          py::metaclass(ConstructingMetaclass()));
  GuardNew(subscription, /*has_constructor=*/true);
  subscription.def(py::init<const PyClient&>(), py::arg("client"))
      .def("fileno", &PySubscription::FileNo,
           "The library's eventfd: readable when notifications are waiting.")
      .def("_next", &PySubscription::Next, py::arg("timeout_ms"))
      .def("close", &PySubscription::Close)
      .def_property_readonly("closed", &PySubscription::closed);
}
