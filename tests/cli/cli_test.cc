// The `gismo` command and the manager's metrics endpoint, end to end: each
// test runs the real binaries against a private manager.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <gismo/gismo.hpp>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

namespace {

using gismo::testing::ManagerProcess;
using nlohmann::json;

constexpr const char* kId1 = "00112233445566778899aabbccddeeff00112233";
constexpr const char* kId2 = "aa112233445566778899aabbccddeeff00112233";
constexpr const char* kId3 = "ab112233445566778899aabbccddeeff00112233";

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
}

std::string TempPath(const std::string& tag) {
  return "/tmp/" + gismo::testing::UniqueName("cli-" + tag);
}

struct CmdResult {
  int code = -1;  // exit status; 128 + signal if killed
  std::string out, err;
};

// A gismo command running in the background.
struct RunningCmd {
  gismo::testing::Process process;
  std::string in, out, err;  // its stdin, stdout and stderr files
};

// Starts the gismo binary with `args`, feeding `input` on stdin. `env`
// entries (NAME=VALUE) are added; GISMO_ADDRESS and GISMO_NODE are cleared
// first.
// `piped`: stdin is a pipe (a stream, whose size is known only at its end)
// that `input` goes through, rather than a file.
RunningCmd StartGismo(const std::vector<std::string>& args, const std::string& input = {},
                      const std::vector<std::string>& env = {}, bool piped = false) {
  RunningCmd c{{}, TempPath("in"), TempPath("out"), TempPath("err")};
  WriteFile(c.in, input);
  gismo::testing::SpawnOptions o;
  o.argv = {GISMO_CLI_BIN};
  if (piped) o.argv = {"/bin/sh", "-c", "cat \"$0\" | \"$@\"", c.in, GISMO_CLI_BIN};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.unset_env = {"GISMO_ADDRESS", "GISMO_NODE"};
  o.env = env;
  o.stdin_path = piped ? "/dev/null" : c.in;
  o.stdout_path = c.out;
  o.stderr_path = c.err;
  EXPECT_TRUE(c.process.Start(o)) << c.process.error();
  return c;
}

// Waits for a started command and collects its output. A command still
// running after 60 s is killed: a hung command fails the test instead of
// blocking it.
CmdResult FinishGismo(RunningCmd& c) {
  int status = 0;
  if (!c.process.WaitForExit(60, &status)) status = c.process.KillAndWait(SIGKILL);
  CmdResult r;
  r.code = gismo::testing::ExitCode(status);
  r.out = ReadFile(c.out);
  r.err = ReadFile(c.err);
  unlink(c.in.c_str());
  unlink(c.out.c_str());
  unlink(c.err.c_str());
  return r;
}

CmdResult RunGismo(const std::vector<std::string>& args, const std::string& input = {},
                   const std::vector<std::string>& env = {}, bool piped = false) {
  RunningCmd c = StartGismo(args, input, env, piped);
  return FinishGismo(c);
}

// Waits (bounded) until `cond` holds.
bool WaitFor(const std::function<bool()>& cond,
             std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// One HTTP request to 127.0.0.1:port; the whole response ("" on failure).
std::string HttpRequest(uint16_t port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string resp;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
      send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
    char buf[4096];
    for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) resp.append(buf, n);
  }
  close(fd);
  return resp;
}

// The value of the sample `key` (name plus labels, as printed), or -1.
double Metric(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + " ", 0) == 0) return std::stod(line.substr(key.size() + 1));
  }
  return -1;
}

class CliTest : public ::testing::Test {
 protected:
  CliTest()
      : mgr_(gismo::testing::StartManagerProcess(
            {"--metrics", "tcp:127.0.0.1:0", "--lease-ms", "0"})) {
    std::smatch m;
    const std::string& ready = mgr_.ready_line();
    if (std::regex_search(ready, m, std::regex("metrics=tcp:127\\.0\\.0\\.1:([0-9]+)"))) {
      metrics_port_ = static_cast<uint16_t>(std::stoi(m[1]));
    }
  }

  // Runs `gismo CMD ARGS... --address <ours>`.
  CmdResult Gismo(std::vector<std::string> args, const std::string& input = {},
                  const std::vector<std::string>& env = {}) {
    args.push_back("--address");
    args.push_back(mgr_.address());
    return RunGismo(args, input, env);
  }
  // Starts `gismo CMD ARGS... --address <ours>` in the background.
  RunningCmd GismoStart(std::vector<std::string> args) {
    args.push_back("--address");
    args.push_back(mgr_.address());
    return StartGismo(args);
  }
  // `gismo get --name NAME TARGET --address <ours>` run by bash after
  // `prelude` (a trap, a ulimit): the options to start it with.
  gismo::testing::SpawnOptions GetUnderShell(const std::string& prelude, const std::string& name,
                                             const std::string& target) {
    gismo::testing::SpawnOptions o;
    o.argv = {"bash",      "-c",          prelude + "; exec \"$@\"",
              "bash",      GISMO_CLI_BIN, "get",
              "--name",    name,          target,
              "--address", mgr_.address()};
    return o;
  }
  json GismoJson(std::vector<std::string> args) {
    args.push_back("--json");
    CmdResult r = Gismo(args);
    EXPECT_EQ(r.code, 0) << r.err;
    return json::parse(r.out);
  }

  std::string Scrape() {
    std::string resp = HttpRequest(
        metrics_port_, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
    size_t body = resp.find("\r\n\r\n");
    EXPECT_EQ(resp.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << resp;
    return body == std::string::npos ? std::string() : resp.substr(body + 4);
  }

  gismo::Client Connect() { return gismo::testing::MustConnect(mgr_.address()); }

  ManagerProcess mgr_;
  uint16_t metrics_port_ = 0;
};

// A get whose write fails leaves a file that was there as it was (the
// bytes go to a new file beside it, renamed over it once written) and
// removes one it created. The write fails with EFBIG under a 1 KiB file size
// limit (SIGXFSZ ignored).
TEST_F(CliTest, AFailedGetLeavesAFileThatWasThereAndRemovesOneItCreated) {
  ASSERT_EQ(Gismo({"put", "--name", "big", "-"}, std::string(64 << 10, 'b')).code, 0);
  const std::string existing = TempPath("existing"), fresh = TempPath("fresh");
  WriteFile(existing, "precious");
  for (const std::string& path : {existing, fresh}) {
    gismo::testing::SpawnOptions o = GetUnderShell("trap '' XFSZ; ulimit -f 1", "big", path);
    o.stderr_to_stdout = true;
    gismo::testing::RunResult r = gismo::testing::Run(o, 60);
    EXPECT_EQ(r.exit_code, 6) << path << ": " << r.output;
    EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("is unchanged") != std::string::npos, path == existing)
        << path << ": " << r.output;
  }
  EXPECT_EQ(ReadFile(existing), "precious") << "a file that was there lost its contents";
  EXPECT_NE(access(fresh.c_str(), F_OK), 0) << "the partial file it created stays";
  // Nothing is left beside it.
  const std::string dir = existing.substr(0, existing.rfind('/'));
  const std::string base = existing.substr(existing.rfind('/') + 1);
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string().find("." + base + ".gismo-"), std::string::npos)
        << e.path();
  }
  unlink(existing.c_str());
}

// A get onto a file that is there replaces its contents and keeps its mode;
// through a symbolic link, the file it names is replaced and the link stays;
// a file with another hard link is written in place, so both names see the
// object.
TEST_F(CliTest, AGetOntoAFileThatIsThereReplacesItWhole) {
  ASSERT_EQ(Gismo({"put", "--name", "small", "-"}, "new contents").code, 0);
  const std::string file = TempPath("replaced"), link = TempPath("link");
  WriteFile(file, "old contents, longer than the new ones");
  ASSERT_EQ(chmod(file.c_str(), 0600), 0);
  ASSERT_EQ(symlink(file.c_str(), link.c_str()), 0) << strerror(errno);
  ASSERT_EQ(Gismo({"get", "--name", "small", link}).code, 0);
  EXPECT_EQ(ReadFile(file), "new contents");
  struct stat st {};
  ASSERT_EQ(lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  const std::string other_name = TempPath("hard");
  ASSERT_EQ(::link(file.c_str(), other_name.c_str()), 0) << strerror(errno);
  ASSERT_EQ(Gismo({"put", "--name", "second", "-"}, "second contents").code, 0);
  ASSERT_EQ(Gismo({"get", "--name", "second", file}).code, 0);
  EXPECT_EQ(ReadFile(file), "second contents");
  EXPECT_EQ(ReadFile(other_name), "second contents");
  unlink(other_name.c_str());
  unlink(link.c_str());
  unlink(file.c_str());
}

// Sends `sig` to `p` once `started()` (the command has made its file),
// unless it exits first. Returns its wait status.
int SignalOnceStarted(gismo::testing::Process& p, const std::function<bool()>& started, int sig) {
  int status = 0;
  while (!started()) {
    if (p.WaitForExit(0, &status)) return status;
    std::this_thread::yield();
  }
  EXPECT_TRUE(p.Signal(sig));
  EXPECT_TRUE(p.WaitForExit(60, &status));
  return status;
}

// A signal (^C, a kill) while get writes the replacement of a file removes
// that replacement: the file stays as it was and nothing is left beside it
// (a .NAME.gismo-XXXXXX file was left). Should the get finish first, the
// file is replaced and, again, nothing is left.
TEST_F(CliTest, AGetEndedBySignalWhileReplacingAFileLeavesNothingBeside) {
  const std::string big = TempPath("big");
  WriteFile(big, std::string(size_t{96} << 20, 'b'));
  ASSERT_EQ(Gismo({"put", "--name", "big", big}).code, 0);
  unlink(big.c_str());
  const std::string base = gismo::testing::UniqueName("cli-target");
  const std::string file = "/tmp/" + base, prefix = "." + base + ".gismo-";
  WriteFile(file, "old");
  auto replacements = [&] {
    int n = 0;
    if (DIR* d = opendir("/tmp")) {
      while (dirent* e = readdir(d)) n += std::string(e->d_name).rfind(prefix, 0) == 0;
      closedir(d);
    }
    return n;
  };
  RunningCmd c = GismoStart({"get", "--name", "big", file});
  int status = SignalOnceStarted(
      c.process, [&] { return replacements() > 0; }, SIGINT);
  const int code = gismo::testing::ExitCode(status);
  EXPECT_EQ(replacements(), 0) << "a replacement was left beside the file (exit " << code << ")";
  // Old, or the object whole (the signal came after the rename): never a
  // part of it.
  const std::string now = ReadFile(file);
  EXPECT_TRUE(now == "old" || now.size() == size_t{96} << 20) << now.size() << " bytes";
  if (code != 128 + SIGINT) {
    EXPECT_EQ(code, 0) << ReadFile(c.err);
  }
  for (const std::string& f : {c.in, c.out, c.err}) unlink(f.c_str());

  // A signal the command was started ignoring (nohup's SIGHUP) stays
  // ignored: the get goes on and replaces the file.
  WriteFile(file, "old");
  gismo::testing::SpawnOptions o = GetUnderShell("trap '' HUP", "big", file);
  o.stderr_path = TempPath("hup-err");
  gismo::testing::Process hup;
  ASSERT_TRUE(hup.Start(o)) << hup.error();
  status = SignalOnceStarted(
      hup, [&] { return replacements() > 0; }, SIGHUP);
  EXPECT_EQ(gismo::testing::ExitCode(status), 0) << ReadFile(o.stderr_path);
  EXPECT_EQ(ReadFile(file).size(), size_t{96} << 20);
  EXPECT_EQ(replacements(), 0);
  unlink(o.stderr_path.c_str());
  unlink(file.c_str());
}

// A new file ended by a signal before its last byte is removed: ^C, or
// the file size limit's SIGXFSZ (`ulimit -f`), leaves no part of the
// object under the name asked for, and none beside a file it replaces.
TEST_F(CliTest, AGetEndedBySignalLeavesNoPartOfANewFile) {
  const std::string big = TempPath("big");
  WriteFile(big, std::string(size_t{96} << 20, 'b'));
  ASSERT_EQ(Gismo({"put", "--name", "big", big}).code, 0);
  unlink(big.c_str());
  const std::string fresh = TempPath("fresh");
  RunningCmd c = GismoStart({"get", "--name", "big", fresh});
  const int status = SignalOnceStarted(
      c.process, [&] { return access(fresh.c_str(), F_OK) == 0; }, SIGINT);
  const int code = gismo::testing::ExitCode(status);
  // No file, or the object whole (the signal came after its last byte):
  // never a part of it.
  struct stat st {};
  if (stat(fresh.c_str(), &st) == 0) {
    EXPECT_EQ(st.st_size, off_t{96} << 20) << "a part of the object was left (exit " << code << ")";
  }
  if (code != 128 + SIGINT) {
    EXPECT_EQ(code, 0) << ReadFile(c.err);
  }
  for (const std::string& f : {c.in, c.out, c.err, fresh}) unlink(f.c_str());

  // A file size limit of 1 MiB: killed by SIGXFSZ at the first write past it.
  const std::string old = TempPath("old");
  WriteFile(old, "old");
  for (const std::string& target : {fresh, old}) {
    gismo::testing::SpawnOptions o = GetUnderShell("ulimit -f 1024", "big", target);
    o.stderr_path = TempPath("xfsz-err");
    gismo::testing::RunResult r = gismo::testing::Run(o, 60);
    EXPECT_EQ(r.exit_code, 128 + SIGXFSZ) << target << ": " << ReadFile(o.stderr_path);
    unlink(o.stderr_path.c_str());
  }
  EXPECT_NE(access(fresh.c_str(), F_OK), 0) << "a part of the object was left";
  EXPECT_EQ(ReadFile(old), "old");
  const std::string prefix = "." + std::filesystem::path(old).filename().string() + ".gismo-";
  for (const auto& e : std::filesystem::directory_iterator("/tmp")) {
    EXPECT_NE(e.path().filename().string().rfind(prefix, 0), 0u) << "left beside: " << e.path();
  }
  unlink(old.c_str());
}

// /dev/stdout, /dev/fd/N: the descriptor the command was started with, as
// the shell redirected it (appending, at its offset), not the file behind
// it opened anew. Before, the file was replaced by one holding the object
// alone, and what the shell wrote after it went to the replaced file.
TEST_F(CliTest, AGetToADescriptorsPathWritesThroughTheDescriptor) {
  ASSERT_EQ(Gismo({"put", "--name", "obj", "-"}, "hello\n").code, 0);
  const std::string log = TempPath("log"), framed = TempPath("framed"), seven = TempPath("seven");
  WriteFile(log, "line1\n");
  gismo::testing::SpawnOptions o;
  o.argv = {"bash",
            "-c",
            "set -e; g() { \"$1\" get --name obj \"$2\" --address \"$3\"; }; "
            "g \"$1\" /dev/stdout \"$2\" >> \"$3\"; "
            "{ echo header; g \"$1\" /dev/stdout \"$2\"; echo footer; } > \"$4\"; "
            "g \"$1\" /dev/fd/7 \"$2\" 7> \"$5\"",
            "bash",
            GISMO_CLI_BIN,
            mgr_.address(),
            log,
            framed,
            seven};
  o.stderr_path = TempPath("fd-err");
  gismo::testing::RunResult r = gismo::testing::Run(o, 60);
  EXPECT_EQ(r.exit_code, 0) << ReadFile(o.stderr_path);
  EXPECT_EQ(ReadFile(log), "line1\nhello\n");
  EXPECT_EQ(ReadFile(framed), "header\nhello\nfooter\n");
  EXPECT_EQ(ReadFile(seven), "hello\n");
  // A descriptor it was not started with is not one of its own (the
  // manager's connection): it is refused before the command connects.
  CmdResult closed = Gismo({"get", "--name", "obj", "/dev/fd/9"});
  EXPECT_EQ(closed.code, 6) << closed.err;
  EXPECT_NE(closed.err.find("'/dev/fd/9' is closed"), std::string::npos) << closed.err;
  CmdResult json = Gismo({"get", "--name", "obj", "/dev/stdout", "--json"});
  EXPECT_EQ(json.code, 2) << json.err;
  for (const std::string& f : {log, framed, seven, o.stderr_path}) unlink(f.c_str());
}

// A replaced file keeps its group and mode (a file shared through its
// group stays shared); one whose group a new file cannot take is written
// in place, which keeps it.
TEST_F(CliTest, AReplacedFileKeepsItsGroupAndMode) {
  ASSERT_EQ(Gismo({"put", "--name", "obj", "-"}, "new").code, 0);
  gid_t other = 0;
  if (geteuid() == 0) {
    other = getegid() == 65534 ? 65533 : 65534;
  } else {
    std::vector<gid_t> groups(static_cast<size_t>(getgroups(0, nullptr)));
    groups.resize(static_cast<size_t>(getgroups(static_cast<int>(groups.size()), groups.data())));
    auto it = std::find_if(groups.begin(), groups.end(), [](gid_t g) { return g != getegid(); });
    if (it == groups.end()) GTEST_SKIP() << "this user is in no group but its own";
    other = *it;
  }
  const std::string shared = TempPath("shared");
  WriteFile(shared, "old");
  ASSERT_EQ(chown(shared.c_str(), static_cast<uid_t>(-1), other), 0) << strerror(errno);
  ASSERT_EQ(chmod(shared.c_str(), 0664), 0);
  CmdResult r = Gismo({"get", "--name", "obj", shared});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(shared), "new");
  struct stat st {};
  ASSERT_EQ(stat(shared.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, other);
  EXPECT_EQ(st.st_mode & 07777, 0664u);
  unlink(shared.c_str());
}

// A command started with stdin or stdout closed: the descriptor it would
// have given the manager's connection is taken by /dev/null first, and the
// command that needed it says so (before, `get -` wrote the object into the
// protocol stream and exited 0, and `put -` read the manager's socket).
TEST_F(CliTest, ClosedStandardDescriptorsAreNotTheConnection) {
  ASSERT_EQ(Gismo({"put", "--name", "obj", "-"}, "hello").code, 0);
  auto run = [&](const std::string& redirect, std::vector<std::string> args) {
    gismo::testing::SpawnOptions o;
    o.argv = {"bash", "-c", "exec \"$@\" " + redirect, "bash", GISMO_CLI_BIN};
    args.insert(args.end(), {"--address", mgr_.address()});
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.stderr_path = TempPath("closed-err");
    gismo::testing::RunResult r = gismo::testing::Run(o, 60);
    r.output = ReadFile(o.stderr_path);
    unlink(o.stderr_path.c_str());
    return r;
  };
  gismo::testing::RunResult get = run(">&-", {"get", "--name", "obj", "-"});
  EXPECT_EQ(get.exit_code, 6) << get.output;
  EXPECT_NE(get.output.find("stdout is closed"), std::string::npos) << get.output;
  gismo::testing::RunResult put = run("<&-", {"put", "--name", "other", "-"});
  EXPECT_EQ(put.exit_code, 6) << put.output;
  EXPECT_NE(put.output.find("stdin is closed"), std::string::npos) << put.output;
  EXPECT_EQ(Gismo({"stat", "--name", "other"}).code, 4) << "a put of a closed stdin stored";
  // A command that prints to a closed stdout fails, as coreutils do: its
  // output was lost.
  gismo::testing::RunResult stat = run(">&- <&-", {"stat", "--name", "obj"});
  EXPECT_EQ(stat.exit_code, 6) << stat.output;
  EXPECT_NE(stat.output.find("stdout is closed: the output was lost"), std::string::npos)
      << stat.output;
  gismo::testing::RunResult ls = run(">&-", {"ls"});
  EXPECT_EQ(ls.exit_code, 6) << ls.output;
  // A command that needs neither stdin nor stdout runs as usual.
  gismo::testing::RunResult rm = run(">/dev/null <&-", {"rm", "--name", "obj"});
  EXPECT_EQ(rm.exit_code, 0) << rm.output;
  ASSERT_EQ(Gismo({"put", "--name", "obj", "-"}, "hello").code, 0);
  // The manager never saw a stray frame: the session is still served.
  EXPECT_EQ(Gismo({"get", "--name", "obj"}).out, "hello");
}

// Output that could not be written (a full disk: /dev/full) is never exit 0.
TEST_F(CliTest, OutputThatCannotBeWrittenFails) {
  ASSERT_EQ(Gismo({"put", "--name", "obj", "-"}, "hello").code, 0);
  // Runs argv with stdout on /dev/full: its exit status and stderr.
  auto to_full = [](const std::vector<std::string>& argv) {
    gismo::testing::SpawnOptions o;
    o.argv = argv;
    o.stdout_path = "/dev/full";
    o.stderr_path = TempPath("full-err");
    gismo::testing::Process p;
    int status = 0;
    if (!p.Start(o)) {
      ADD_FAILURE() << p.error();
    } else if (!p.WaitForExit(60, &status)) {
      status = p.KillAndWait(SIGKILL);
    }
    const std::string err = ReadFile(o.stderr_path);
    unlink(o.stderr_path.c_str());
    return std::make_pair(gismo::testing::ExitCode(status), err);
  };
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"ls"},
                                             {"ls", "--json"},
                                             {"status"},
                                             {"watch", "--count", "1"},
                                             {"watch", "--count", "1", "--json"}}) {
    std::vector<std::string> argv = {GISMO_CLI_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--address", mgr_.address()});
    auto [code, err] = to_full(argv);
    EXPECT_EQ(code, 6) << args[0] << ": " << err;
    EXPECT_NE(err.find("cannot write stdout"), std::string::npos) << args[0] << ": " << err;
  }
  auto [code, err] = to_full({GISMO_FSCK_BIN, "--address", mgr_.address()});
  EXPECT_EQ(code, 2) << err;
}

// A name the table cannot take is refused before the object is stored (a
// retry would find it there); an empty one too, rather than taken for no
// --bind at all (the object was stored and nothing bound, without a word).
TEST_F(CliTest, PutWithABindThatCannotBeMadeStoresNothing) {
  for (const std::string& name : {std::string(193, 'n'), std::string()}) {
    CmdResult r = Gismo({"put", "--name", "obj", "--bind", name, "-"}, "x");
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find("--bind"), std::string::npos) << r.err;
    EXPECT_EQ(Gismo({"stat", "--name", "obj"}).code, 4);
  }
}

TEST_F(CliTest, PutGetRoundTripFromFileAndStdin) {
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + (i >> 13));
  const std::string in = TempPath("data"), out = TempPath("copy");
  WriteFile(in, data);

  CmdResult put = Gismo({"put", kId1, in, "--metadata", "hello"});
  ASSERT_EQ(put.code, 0) << put.err;
  EXPECT_EQ(put.out, std::string("stored ") + kId1 + " (3.00 MiB)\n");

  json got = GismoJson({"get", kId1, out});
  EXPECT_EQ(got["size"], data.size());
  EXPECT_EQ(got["metadata_size"], 5);
  EXPECT_EQ(ReadFile(out), data);

  // stdin in, stdout out, by name.
  CmdResult pj = Gismo({"put", "--name", "greeting", "-", "--json"}, "hello");
  ASSERT_EQ(pj.code, 0) << pj.err;
  json p = json::parse(pj.out);
  EXPECT_EQ(p["id"], gismo::ObjectId::FromName("greeting").Hex());
  EXPECT_EQ(p["name"], "greeting");
  EXPECT_EQ(p["size"], 5);
  CmdResult put2 = Gismo({"put", "--name", "greeting2", "-"}, "hi there\n");
  ASSERT_EQ(put2.code, 0) << put2.err;
  CmdResult get2 = Gismo({"get", "--name", "greeting2"});
  ASSERT_EQ(get2.code, 0) << get2.err;
  EXPECT_EQ(get2.out, "hi there\n");
  // --name with an output file.
  CmdResult get3 = Gismo({"get", "--name", "greeting2", out});
  ASSERT_EQ(get3.code, 0) << get3.err;
  EXPECT_EQ(ReadFile(out), "hi there\n");
  EXPECT_EQ(json::parse(Gismo({"stat", "--name", "greeting2", "--json"}).out)["id"],
            gismo::ObjectId::FromName("greeting2").Hex());
  unlink(in.c_str());
  unlink(out.c_str());
}

TEST_F(CliTest, StatusHumanAndJson) {
  ASSERT_EQ(Gismo({"put", kId1, "-"}, std::string(5000, 'x')).code, 0);
  ASSERT_EQ(Gismo({"put", kId2, "-"}, "y").code, 0);
  gismo::Client held = Connect();  // an unsealed object and one more client
  auto unsealed = held.Create(gismo::ObjectId::FromHex(kId3).value(), 100);
  ASSERT_TRUE(unsealed.ok());

  json s = GismoJson({"status"});
  EXPECT_GT(s["capacity_bytes"].get<uint64_t>(), 200ull << 20);
  EXPECT_EQ(s["capacity_bytes"].get<uint64_t>(),
            s["used_bytes"].get<uint64_t>() + s["free_bytes"].get<uint64_t>());
  EXPECT_GT(s["largest_free_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(s["objects"]["total"], 3);
  EXPECT_EQ(s["objects"]["sealed"], 2);
  EXPECT_EQ(s["objects"]["unsealed"], 1);
  EXPECT_EQ(s["objects"]["deleting"], 0);
  EXPECT_EQ(s["clients"]["total"], 1);  // `held`; the command leaves itself out
  EXPECT_EQ(s["clients"]["by_node"]["0"], 1);
  EXPECT_EQ(s["manager"]["epoch"], 1);
  EXPECT_GE(s["manager"]["uptime_seconds"].get<double>(), 0.0);
  EXPECT_EQ(s["region"]["format_version"].get<uint32_t>() > 0, true);
  // The manager here formats its region coherent (the default).
  EXPECT_EQ(s["region"]["coherence"], "coherent");
  const std::string uuid = s["region"]["uuid"].get<std::string>();
  EXPECT_EQ(uuid.size(), 32u);
  EXPECT_EQ(uuid.find_first_not_of("0123456789abcdef"), std::string::npos) << uuid;
  EXPECT_NE(uuid, std::string(32, '0'));
  EXPECT_EQ(s["library_version"], gismo_version());
  EXPECT_EQ(s["address"], mgr_.address());

  CmdResult h = Gismo({"status"});
  ASSERT_EQ(h.code, 0) << h.err;
  EXPECT_NE(h.out.find("capacity:"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find(" MiB"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("3 of "), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("(2 sealed, 1 unsealed, 0 pending delete)"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("node 0"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("epoch 1"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find(", coherent, "), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("region uuid:    " + uuid), std::string::npos) << h.out;
  EXPECT_NE(h.out.find(std::string("library:        ") + gismo_version()), std::string::npos);
  EXPECT_EQ(h.out.find("CLIENT"), std::string::npos) << "clients listed without --clients";

  // --clients lists the others with the ids gismo fence --client takes.
  json listed = GismoJson({"status", "--clients"});
  ASSERT_EQ(listed["clients"]["list"].size(), 1u) << listed.dump();
  const json& entry = listed["clients"]["list"][0];
  EXPECT_EQ(entry["slot"].get<uint32_t>(), held.Identity()->slot);
  EXPECT_EQ(entry["node"], 0);
  EXPECT_GT(entry["client_id"].get<uint64_t>(), 0u);
  EXPECT_GT(entry["pid"].get<uint64_t>(), 0u);
  CmdResult hc = Gismo({"status", "--clients"});
  ASSERT_EQ(hc.code, 0) << hc.err;
  EXPECT_NE(hc.out.find("CLIENT"), std::string::npos) << hc.out;
  EXPECT_NE(hc.out.find("  " + std::to_string(entry["client_id"].get<uint64_t>()) + " "),
            std::string::npos)
      << hc.out;
}

// A GISMO_NODE that is no node id is an error, not node 0 (the manager's).
TEST_F(CliTest, ABadGismoNodeIsRefused) {
  for (const char* bad :
       {"GISMO_NODE=abc", "GISMO_NODE=4294967296", "GISMO_NODE=-1", "GISMO_NODE=5x"}) {
    CmdResult r = Gismo({"status"}, "", {bad});
    EXPECT_NE(r.code, 0) << bad;
    EXPECT_NE(r.err.find("GISMO_NODE must be a node id"), std::string::npos)
        << bad << ": " << r.err;
  }
  EXPECT_EQ(Gismo({"status"}, "", {"GISMO_NODE=4294967295"}).code, 0);
}

TEST_F(CliTest, LsFiltersSortsAndLimits) {
  ASSERT_EQ(Gismo({"put", kId1, "-"}, std::string(10, 'a')).code, 0);
  ASSERT_EQ(Gismo({"put", kId2, "-"}, std::string(30000, 'b'), {"GISMO_NODE=5"}).code, 0);
  gismo::Client c = Connect();
  auto unsealed = c.Create(gismo::ObjectId::FromHex(kId3).value(), 2000);
  ASSERT_TRUE(unsealed.ok());

  json all = GismoJson({"ls"});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0]["id"], kId1);  // default order: id
  EXPECT_EQ(all[1]["id"], kId2);
  EXPECT_EQ(all[2]["id"], kId3);
  EXPECT_EQ(all[2]["state"], "unsealed");
  EXPECT_EQ(all[2]["refs"], 1);
  EXPECT_EQ(all[1]["node"], 5);

  json sealed = GismoJson({"ls", "--state", "sealed"});
  EXPECT_EQ(sealed.size(), 2u);
  json node5 = GismoJson({"ls", "--node", "5"});
  ASSERT_EQ(node5.size(), 1u);
  EXPECT_EQ(node5[0]["id"], kId2);
  json pre = GismoJson({"ls", "--prefix", "AA"});
  ASSERT_EQ(pre.size(), 1u);
  EXPECT_EQ(pre[0]["id"], kId2);
  EXPECT_EQ(GismoJson({"ls", "--prefix", "a"}).size(), 2u);
  json biggest = GismoJson({"ls", "--sort", "size", "--reverse", "--limit", "1"});
  ASSERT_EQ(biggest.size(), 1u);
  EXPECT_EQ(biggest[0]["id"], kId2);
  json by_refs = GismoJson({"ls", "--sort", "refs", "--reverse"});
  EXPECT_EQ(by_refs[0]["id"], kId3);
  json youngest = GismoJson({"ls", "--sort", "age", "--limit", "1"});
  EXPECT_EQ(youngest[0]["id"], kId3);

  CmdResult h = Gismo({"ls", "--state", "sealed"});
  ASSERT_EQ(h.code, 0) << h.err;
  std::istringstream lines(h.out);
  std::string header, l1, l2, extra;
  std::getline(lines, header);
  std::getline(lines, l1);
  std::getline(lines, l2);
  EXPECT_FALSE(std::getline(lines, extra));
  EXPECT_EQ(header.rfind("ID", 0), 0u);
  EXPECT_NE(header.find("SIZE"), std::string::npos);
  EXPECT_NE(header.find("AGE"), std::string::npos);
  EXPECT_EQ(l1.rfind(kId1, 0), 0u);
  EXPECT_NE(l1.find("10 B"), std::string::npos) << l1;
  EXPECT_NE(l2.find("29.30 KiB"), std::string::npos) << l2;
  EXPECT_NE(l2.find("sealed"), std::string::npos) << l2;
}

TEST_F(CliTest, StatShowsReferencesAndState) {
  ASSERT_EQ(Gismo({"put", kId1, "-", "--metadata", "meta"}, "payload").code, 0);
  gismo::Client c = Connect();
  auto buf = c.Get(gismo::ObjectId::FromHex(kId1).value(), 0);
  ASSERT_TRUE(buf.ok());

  json s = GismoJson({"stat", kId1});
  EXPECT_EQ(s["id"], kId1);
  EXPECT_EQ(s["state"], "sealed");
  EXPECT_EQ(s["size"], 7);
  EXPECT_EQ(s["metadata_size"], 4);
  EXPECT_EQ(s["refs"], 1);

  CmdResult h = Gismo({"stat", kId1});
  ASSERT_EQ(h.code, 0) << h.err;
  EXPECT_NE(h.out.find("state:     sealed"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("size:      7 B (7 bytes)"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("refs:      1"), std::string::npos) << h.out;

  // Deleted while held: pending delete until the last release.
  CmdResult rm = Gismo({"rm", kId1});
  ASSERT_EQ(rm.code, 0) << rm.err;
  EXPECT_EQ(rm.out, std::string("deleted ") + kId1 + "\n");
  EXPECT_EQ(GismoJson({"stat", kId1})["state"], "deleting");
  ASSERT_TRUE(buf->Release().ok());
  CmdResult gone = Gismo({"stat", kId1});
  EXPECT_EQ(gone.code, 4);
  EXPECT_NE(gone.err.find("no object"), std::string::npos) << gone.err;
}

TEST_F(CliTest, RmJsonAndGetTimeouts) {
  ASSERT_EQ(Gismo({"put", "--name", "x", "-"}, "x").code, 0);
  json rm = GismoJson({"rm", "--name", "x"});
  EXPECT_EQ(rm["deleted"], true);
  EXPECT_EQ(rm["id"], gismo::ObjectId::FromName("x").Hex());
  EXPECT_EQ(Gismo({"rm", "--name", "x"}).code, 4);

  gismo::Client c = Connect();
  auto unsealed = c.Create(gismo::ObjectId::FromHex(kId3).value(), 10);
  ASSERT_TRUE(unsealed.ok());
  CmdResult wait = Gismo({"get", kId3, "--timeout-ms", "20"});
  EXPECT_EQ(wait.code, 5);
  EXPECT_NE(wait.err.find("not sealed within 20 ms"), std::string::npos) << wait.err;
  CmdResult missing = Gismo({"get", kId1});
  EXPECT_EQ(missing.code, 4);
  EXPECT_NE(missing.err.find(std::string("no object ") + kId1), std::string::npos);
}

TEST_F(CliTest, FsckOnlineThenOffline) {
  ASSERT_EQ(Gismo({"put", "--name", "f", "-"}, "fsck me").code, 0);
  CmdResult online = Gismo({"fsck"});
  EXPECT_EQ(online.code, 0) << online.out << online.err;
  EXPECT_NE(online.out.find("sound (online)"), std::string::npos) << online.out;
  EXPECT_NE(online.out.find("1 objects"), std::string::npos) << online.out;
  CmdResult quiet = Gismo({"fsck", "--quiet"});
  EXPECT_EQ(quiet.code, 0);
  EXPECT_EQ(quiet.out, "");
  // Offline and online at once is a usage error, not one of them silently.
  CmdResult both = Gismo({"fsck", "--region", mgr_.region()});
  EXPECT_EQ(both.code, 2) << both.err;
  EXPECT_NE(both.err.find("one or the other"), std::string::npos) << both.err;
  gismo::testing::SpawnOptions o;
  o.argv = {GISMO_FSCK_BIN, "--region", mgr_.region(), "--address", mgr_.address()};
  o.stderr_to_stdout = true;
  gismo::testing::RunResult r = gismo::testing::Run(o, 60);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("one or the other"), std::string::npos) << r.output;
  mgr_.Stop();
  CmdResult offline = RunGismo({"fsck", "--region", mgr_.region()});
  EXPECT_EQ(offline.code, 0) << offline.out << offline.err;
  EXPECT_NE(offline.out.find("sound (offline)"), std::string::npos) << offline.out;
  // An offline check needs only read permission (a snapshot, a read-only
  // medium, an auditor's account): it opened the region for writing. As
  // root, which opens any file for writing, the check runs without the
  // capabilities that override file modes (as nobody it could not reach a
  // build directory only root may enter).
  struct stat st {};
  ASSERT_EQ(stat(mgr_.region().c_str(), &st), 0);
  ASSERT_EQ(chmod(mgr_.region().c_str(), 0444), 0);
  gismo::testing::SpawnOptions reader;
  if (geteuid() == 0) {
    reader.argv = {"setpriv", "--bounding-set=-dac_override,-dac_read_search",
                   "--inh-caps=-dac_override,-dac_read_search"};
  }
  reader.argv.insert(reader.argv.end(), {GISMO_FSCK_BIN, "--region", mgr_.region()});
  reader.stderr_to_stdout = true;
  gismo::testing::RunResult read_only = gismo::testing::Run(reader, 60);
  EXPECT_EQ(read_only.exit_code, 0) << read_only.output;
  EXPECT_NE(read_only.output.find("sound (offline)"), std::string::npos) << read_only.output;
  ASSERT_EQ(chmod(mgr_.region().c_str(), st.st_mode & 07777), 0);
  CmdResult missing = RunGismo({"fsck", "--region", "/dev/shm/no-such-gismo-region"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("cannot open region"), std::string::npos) << missing.err;
}

// Careless input (issue 16): each of these aborted, read without bound, stored
// nothing, or was accepted.
TEST_F(CliTest, EndlessAndSizelessInputs) {
  // /dev/zero never ends: reading stops at the store's heap. A small
  // store, so that the read is short in the sanitizer builds too.
  gismo::testing::ManagerProcess small = gismo::testing::StartManagerProcess({}, "16MiB");
  CmdResult zero = RunGismo({"put", "--name", "z", "/dev/zero", "--address", small.address()});
  EXPECT_EQ(zero.code, 1) << zero.err;
  EXPECT_NE(zero.err.find("of heap, free or evictable"), std::string::npos) << zero.err;
  EXPECT_EQ(RunGismo({"stat", "--name", "z", "--address", small.address()}).code, 4);
  // A /proc file says 0 bytes in stat but has content: read until EOF.
  CmdResult proc = Gismo({"put", "--name", "c", "/proc/self/status"});
  ASSERT_EQ(proc.code, 0) << proc.err;
  json st = GismoJson({"stat", "--name", "c"});
  EXPECT_GT(st["size"].get<uint64_t>(), 0u) << st.dump();
  // A sysfs file says a page (4096 bytes) and holds a few: it is stored
  // whole, at its real length (it failed: "ended after 4 of 4096 bytes").
  const std::string sys_file = "/sys/devices/system/cpu/online";
  if (access(sys_file.c_str(), R_OK) == 0) {
    CmdResult sys = Gismo({"put", "--name", "s", sys_file});
    ASSERT_EQ(sys.code, 0) << sys.err;
    EXPECT_EQ(Gismo({"get", "--name", "s"}).out, ReadFile(sys_file));
  }
}

// A stream (a pipe) is stored whole whatever its length: what passes
// --buffer goes to a spool file, never unbounded memory. With --size it is
// read straight into the store, and a stream of another length stores
// nothing.
TEST_F(CliTest, StreamsOfAnyLength) {
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 131) >> 7);
  auto put = [&](std::vector<std::string> args, const std::string& input,
                 const std::vector<std::string>& env = {}) {
    args.insert(args.end(), {"--address", mgr_.address()});
    return RunGismo(args, input, env, /*piped=*/true);
  };
  auto stored = [&](const std::string& name) { return Gismo({"get", "--name", name}).out; };
  CmdResult spooled = put({"put", "--name", "spooled", "--buffer", "1MiB", "-"}, data);
  ASSERT_EQ(spooled.code, 0) << spooled.err;
  EXPECT_EQ(stored("spooled"), data);
  ASSERT_EQ(put({"put", "--name", "in-memory", "-"}, data).code, 0);
  EXPECT_EQ(stored("in-memory"), data);
  ASSERT_EQ(put({"put", "--name", "empty", "--buffer", "1", "-"}, "").code, 0);
  EXPECT_EQ(GismoJson({"stat", "--name", "empty"})["size"], 0);

  CmdResult sized = put({"put", "--name", "sized", "--size", "3MiB", "-"}, data);
  ASSERT_EQ(sized.code, 0) << sized.err;
  EXPECT_EQ(stored("sized"), data);
  // A stream that is not --size long is a usage error, as a file is.
  CmdResult longer = put({"put", "--name", "longer", "--size", "1000", "-"}, data);
  EXPECT_EQ(longer.code, 2) << longer.err;
  EXPECT_NE(longer.err.find("more than --size"), std::string::npos) << longer.err;
  CmdResult shorter = put({"put", "--name", "shorter", "--size", "4MiB", "-"}, data);
  EXPECT_EQ(shorter.code, 2) << shorter.err;
  EXPECT_NE(shorter.err.find("ended after 3145728 of 4194304 bytes"), std::string::npos)
      << shorter.err;
  EXPECT_EQ(Gismo({"stat", "--name", "longer"}).code, 4);
  EXPECT_EQ(Gismo({"stat", "--name", "shorter"}).code, 4);
  // A file's size is known: another --size is a usage error.
  const std::string file = TempPath("sized");
  WriteFile(file, "12345");
  EXPECT_EQ(Gismo({"put", "--name", "file", "--size", "4", file}).code, 2);
  EXPECT_EQ(Gismo({"put", "--name", "file", "--size", "5", file}).code, 0);
  unlink(file.c_str());

  // Nowhere to spool: a clear error, nothing stored.
  CmdResult nowhere = put({"put", "--name", "nowhere", "--buffer", "1MiB", "-"}, data,
                          {"TMPDIR=/nonexistent-gismo-dir"});
  EXPECT_EQ(nowhere.code, 6) << nowhere.err;
  EXPECT_NE(nowhere.err.find("cannot make a spool file in /nonexistent-gismo-dir"),
            std::string::npos)
      << nowhere.err;
  EXPECT_EQ(Gismo({"stat", "--name", "nowhere"}).code, 4);
  EXPECT_EQ(Gismo({"put", "--name", "x", "--buffer", "0", "-"}).code, 2);
}

TEST_F(CliTest, NamesAndPathsThatAreNotUtf8WithJson) {
  const std::string name = "bad\xff\xfename";
  CmdResult put = Gismo({"put", "--json", "--name", name, "-"}, "data");
  ASSERT_EQ(put.code, 0) << put.err;
  json j = json::parse(put.out);
  EXPECT_EQ(j["id"], gismo::ObjectId::FromName(name).Hex());
  const std::string out = TempPath("out\xff");
  CmdResult get = Gismo({"get", "--json", "--name", name, out});
  EXPECT_EQ(get.code, 0) << get.err;
  EXPECT_TRUE(json::accept(get.out)) << get.out;
  EXPECT_EQ(ReadFile(out), "data");
  unlink(out.c_str());
}

// The name table: put --bind, bind (plain, --if-unbound, --if-bound-to),
// ls --names [--prefix], get/stat --bound, unbind; --name keeps meaning
// the id derived from a string.
TEST_F(CliTest, NameTable) {
  ASSERT_EQ(Gismo({"put", "--name", "v1", "--bind", "job/ckpt", "-"}, "one").code, 0);
  ASSERT_EQ(Gismo({"put", "--name", "v2", "-"}, "two").code, 0);
  const std::string v1 = gismo::ObjectId::FromName("v1").Hex();
  const std::string v2 = gismo::ObjectId::FromName("v2").Hex();
  CmdResult get = Gismo({"get", "--bound", "job/ckpt"});
  ASSERT_EQ(get.code, 0) << get.err;
  EXPECT_EQ(get.out, "one");
  // A compare-and-swap that loses exits 1 and changes nothing.
  CmdResult lost = Gismo({"bind", "job/ckpt", "--name", "v2", "--if-bound-to", v2});
  EXPECT_EQ(lost.code, 1) << lost.err;
  EXPECT_NE(lost.err.find("bound otherwise than expected"), std::string::npos) << lost.err;
  EXPECT_EQ(Gismo({"bind", "job/ckpt", "--name", "v2", "--if-unbound"}).code, 1);
  CmdResult won = Gismo({"bind", "job/ckpt", "--name", "v2", "--if-bound-to", v1});
  ASSERT_EQ(won.code, 0) << won.err;
  EXPECT_EQ(won.out, "bound 'job/ckpt' to " + v2 + "\n");
  EXPECT_EQ(Gismo({"get", "--bound", "job/ckpt"}).out, "two");
  EXPECT_EQ(json::parse(Gismo({"stat", "--bound", "job/ckpt", "--json"}).out)["id"], v2);
  ASSERT_EQ(Gismo({"bind", "other", v1}).code, 0);
  json all = GismoJson({"ls", "--names"});
  ASSERT_EQ(all.size(), 2u) << all.dump();
  EXPECT_EQ(all[0]["name"], "job/ckpt");
  EXPECT_EQ(all[0]["id"], v2);
  EXPECT_EQ(all[0]["version"], 2);
  EXPECT_EQ(all[1]["name"], "other");
  json some = GismoJson({"ls", "--names", "--prefix", "job/"});
  ASSERT_EQ(some.size(), 1u) << some.dump();
  CmdResult human = Gismo({"ls", "--names"});
  EXPECT_NE(human.out.find(v2 + "         2"), std::string::npos) << human.out;
  // A name another client chose, with a line break and a terminal escape:
  // one row, its control bytes shown as \xNN (JSON keeps the name).
  const std::string forged = "ok\nFORGED-ROW\x1b[2J";
  ASSERT_EQ(Gismo({"bind", forged, v1}).code, 0);
  human = Gismo({"ls", "--names", "--prefix", "ok"});
  EXPECT_NE(human.out.find("ok\\x0aFORGED-ROW\\x1b[2J\n"), std::string::npos) << human.out;
  EXPECT_EQ(std::count(human.out.begin(), human.out.end(), '\n'), 2) << human.out;
  EXPECT_EQ(GismoJson({"ls", "--names", "--prefix", "ok"})[0]["name"], forged);
  ASSERT_EQ(Gismo({"unbind", forged}).code, 0);
  // Errors: an unbound name is "not found" (4); a name the table cannot
  // hold is a usage error (2) wherever it is given, as for put --bind; so
  // is --bound with an ID.
  EXPECT_EQ(Gismo({"get", "--bound", "nope"}).code, 4);
  for (const std::string& bad : {std::string(193, 'n'), std::string()}) {
    CmdResult bind = Gismo({"bind", bad, v1});
    EXPECT_EQ(bind.code, 2) << bind.err;
    EXPECT_NE(bind.err.find("NAME: a name is 1 to 192 bytes"), std::string::npos) << bind.err;
    EXPECT_EQ(Gismo({"unbind", bad}).code, 2);
    EXPECT_EQ(Gismo({"get", "--bound", bad}).code, 2);
  }
  EXPECT_EQ(Gismo({"stat", v1, "--bound", "other"}).code, 2);
  EXPECT_EQ(Gismo({"bind", "x", "--name", "never-stored"}).code, 4);
  ASSERT_EQ(Gismo({"unbind", "other", "--if-bound-to", v2}).code, 1);
  ASSERT_EQ(Gismo({"unbind", "other"}).code, 0);
  EXPECT_EQ(GismoJson({"ls", "--names"}).size(), 1u);
  EXPECT_EQ(Gismo({"unbind", "other"}).code, 4);
}

// An offline check of a region a manager on this host serves would report
// its clients' operations in flight as damage: refused (exit 2, saying
// what to do), unless asked for anyway.
TEST_F(CliTest, AnOfflineCheckOfAServedRegionIsRefused) {
  gismo::testing::SpawnOptions o;
  o.argv = {GISMO_FSCK_BIN, "--region", mgr_.region()};
  o.stderr_to_stdout = true;
  gismo::testing::RunResult r = gismo::testing::Run(o, 60);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("check it online"), std::string::npos) << r.output;
  o.argv.push_back("--offline-while-served");
  r = gismo::testing::Run(o, 60);
  EXPECT_LT(r.exit_code, 2) << r.output;  // checked: sound, or damage in flight
  EXPECT_NE(r.output.find("(offline)"), std::string::npos) << r.output;
}

// gismo-fsck given a FIFO fails at once (it blocked for ever opening it),
// and `gismo fsck` without a checker to run exits 2, gismo-fsck's status for
// "could not check" (it was 1, "problems were found").
TEST_F(CliTest, FsckOfAFifoOrWithoutAChecker) {
  const std::string fifo = TempPath("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {GISMO_FSCK_BIN, "--region", fifo}, {GISMO_CLI_BIN, "fsck", "--region", fifo}}) {
    gismo::testing::SpawnOptions o;
    o.argv = argv;
    o.stderr_to_stdout = true;
    gismo::testing::RunResult r = gismo::testing::Run(o, 60);
    EXPECT_FALSE(r.timed_out) << argv[0];
    EXPECT_EQ(r.exit_code, 2) << argv[0] << ": " << r.output;
  }
  unlink(fifo.c_str());
  const std::string dir = TempPath("alone");
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  const std::string copy = dir + "/gismo";
  WriteFile(copy, ReadFile(GISMO_CLI_BIN));
  ASSERT_EQ(chmod(copy.c_str(), 0700), 0);
  gismo::testing::SpawnOptions o;
  o.argv = {copy, "fsck", "--address", mgr_.address()};
  o.env = {"PATH=" + dir};
  o.stderr_to_stdout = true;
  gismo::testing::RunResult r = gismo::testing::Run(o, 60);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("cannot run the region checker"), std::string::npos) << r.output;
  unlink(copy.c_str());
  rmdir(dir.c_str());
}

TEST_F(CliTest, FsckJsonAndNegativeLimit) {
  ASSERT_EQ(Gismo({"put", "--name", "f", "-"}, "fsck me").code, 0);
  CmdResult fsck = Gismo({"fsck", "--json"});
  ASSERT_EQ(fsck.code, 0) << fsck.out << fsck.err;
  json j = json::parse(fsck.out);
  EXPECT_EQ(j["sound"], true);
  EXPECT_EQ(j["objects"], 1);
  EXPECT_EQ(j["mode"], "online");
  CmdResult ls = Gismo({"ls", "--limit", "-1"});
  EXPECT_EQ(ls.code, 2) << ls.out;
  EXPECT_NE(ls.err.find("--limit"), std::string::npos) << ls.err;
}

// A timeout meaning "forever" waits (it overflowed into "at once": exit 5).
TEST_F(CliTest, GetWithAnEndlessTimeoutWaits) {
  const std::string out = TempPath("later");
  for (const char* forever : {"9223372036854775807", "10000000000000"}) {
    RunningCmd get = GismoStart({"get", "--name", "later", out, "--timeout-ms", forever});
    // It stays connected, waiting (it used to give up at once: exit 5).
    gismo::Client c = Connect();
    ASSERT_TRUE(WaitFor([&] {
      auto u = c.Usage();
      return u.ok() && u->client_count >= 2;
    })) << "gismo get did not stay connected";
    ASSERT_EQ(Gismo({"put", "--name", "later", "-"}, "at last").code, 0);
    CmdResult r = FinishGismo(get);
    EXPECT_EQ(r.code, 0) << forever << ": " << r.err;
    EXPECT_EQ(ReadFile(out), "at last");
    ASSERT_EQ(Gismo({"rm", "--name", "later"}).code, 0);
  }
  unlink(out.c_str());
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST_F(CliTest, WatchJsonListsSealedObjectsThenLiveEvents) {
  ASSERT_EQ(Gismo({"put", kId1, "-", "--metadata", "meta"}, "hello").code, 0);
  RunningCmd watch = GismoStart({"watch", "--json", "--count", "4", "--timeout-ms", "20000"});
  // The initial listing shows that the watch has subscribed.
  ASSERT_TRUE(WaitFor([&] { return ReadFile(watch.out).find(kId1) != std::string::npos; }))
      << ReadFile(watch.err);
  ASSERT_EQ(Gismo({"put", kId2, "-"}, "xy").code, 0);
  ASSERT_EQ(Gismo({"rm", kId1}).code, 0);
  ASSERT_EQ(Gismo({"put", kId3, "-"}, "z", {"GISMO_NODE=7"}).code, 0);
  CmdResult r = FinishGismo(watch);
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  std::vector<json> j;
  for (const auto& l : lines) j.push_back(json::parse(l));  // one object per line
  EXPECT_EQ(j[0]["event"], "sealed");
  EXPECT_EQ(j[0]["id"], kId1);
  EXPECT_EQ(j[0]["seq"], 0);
  EXPECT_EQ(j[0]["size"], 5);
  EXPECT_EQ(j[0]["metadata_size"], 4);
  EXPECT_EQ(j[1]["event"], "sealed");
  EXPECT_EQ(j[1]["id"], kId2);
  EXPECT_EQ(j[1]["size"], 2);
  EXPECT_GT(j[1]["seq"].get<uint64_t>(), 0u);
  EXPECT_EQ(j[2]["event"], "deleted");
  EXPECT_EQ(j[2]["id"], kId1);
  EXPECT_GT(j[2]["seq"].get<uint64_t>(), j[1]["seq"].get<uint64_t>());
  EXPECT_EQ(j[3]["id"], kId3);
  EXPECT_EQ(j[3]["node"], 7);
  EXPECT_EQ(j[1]["node"], 0);
  for (const auto& e : j) {
    EXPECT_TRUE(std::regex_match(e["time"].get<std::string>(),
                                 std::regex("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{6}Z")))
        << e;
    EXPECT_GT(e["time_ns"].get<uint64_t>(), 0u);
  }
}

TEST_F(CliTest, WatchHumanSkipsInitialObjectsWithNoInitial) {
  ASSERT_EQ(Gismo({"put", kId1, "-"}, "already here").code, 0);
  RunningCmd watch = GismoStart({"watch", "--no-initial", "--count", "2"});
  // The header is printed once subscribed.
  ASSERT_TRUE(WaitFor([&] { return ReadFile(watch.out).rfind("TIME", 0) == 0; }))
      << ReadFile(watch.err);
  ASSERT_EQ(
      Gismo({"put", kId2, "-", "--metadata", "abc"}, std::string(3000, 'q'), {"GISMO_NODE=4"}).code,
      0);
  ASSERT_EQ(Gismo({"rm", kId2}).code, 0);
  CmdResult r = FinishGismo(watch);
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  for (const char* col : {"TIME", "EVENT", "ID", "SIZE", "METADATA", "NODE", "SEQ"}) {
    EXPECT_NE(lines[0].find(col), std::string::npos) << lines[0];
  }
  EXPECT_EQ(r.out.find(kId1), std::string::npos) << "listed despite --no-initial: " << r.out;
  std::smatch m;
  const std::regex row(
      "(\\S+)  (sealed|deleted) +([0-9a-f]{40}) +(\\S+ \\w+) +(\\S+ \\w+) +(\\d+) +(\\d+)");
  ASSERT_TRUE(std::regex_match(lines[1], m, row)) << lines[1];
  EXPECT_EQ(m[2], "sealed");
  EXPECT_EQ(m[3], kId2);
  EXPECT_EQ(m[4], "2.93 KiB");
  EXPECT_EQ(m[5], "3 B");
  EXPECT_EQ(m[6], "4");
  const uint64_t seq1 = std::stoull(m[7]);
  EXPECT_GT(seq1, 0u);
  ASSERT_TRUE(std::regex_match(lines[2], m, row)) << lines[2];
  EXPECT_EQ(m[2], "deleted");
  EXPECT_EQ(m[3], kId2);
  EXPECT_EQ(m[6], "0");
  EXPECT_EQ(std::stoull(m[7]), seq1 + 1);
}

TEST_F(CliTest, WatchStopsWhenIdle) {
  ASSERT_EQ(Gismo({"put", kId1, "-"}, "a").code, 0);
  // Idle for --timeout-ms without --count: a normal end.
  CmdResult idle = Gismo({"watch", "--json", "--timeout-ms", "100"});
  ASSERT_EQ(idle.code, 0) << idle.err;
  ASSERT_EQ(Lines(idle.out).size(), 1u) << idle.out;
  EXPECT_EQ(json::parse(idle.out)["id"], kId1);
  CmdResult header_only = Gismo({"watch", "--no-initial", "--timeout-ms", "50"});
  ASSERT_EQ(header_only.code, 0) << header_only.err;
  EXPECT_EQ(Lines(header_only.out).size(), 1u) << header_only.out;
  // With --count, stopping short is a timeout.
  CmdResult short_count = Gismo({"watch", "--count", "3", "--timeout-ms", "100"});
  EXPECT_EQ(short_count.code, 5);
  EXPECT_NE(short_count.err.find("got 1 of 3 notifications"), std::string::npos) << short_count.err;
  // --count alone stops without waiting once it has them.
  CmdResult counted = Gismo({"watch", "--count", "1", "--json"});
  ASSERT_EQ(counted.code, 0) << counted.err;
  EXPECT_EQ(json::parse(counted.out)["seq"], 0);
}

TEST_F(CliTest, WatchBadInput) {
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"watch", "--count", "-1"}, 2, "--count"},
      {{"watch", "--count", "many"}, 2, "many"},
      {{"watch", "--timeout-ms", "-2"}, 2, "--timeout-ms"},
      {{"watch", "--timeout-ms", "soon"}, 2, "soon"},
      {{"watch", kId1}, 2, kId1},
      {{"watch", "--bogus"}, 2, "--bogus"},
  };
  for (const auto& c : cases) {
    CmdResult r = Gismo(c.args);
    std::string what;
    for (const auto& a : c.args) what += a + " ";
    EXPECT_EQ(r.code, c.code) << what << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << what << "\n" << r.err;
    EXPECT_TRUE(r.out.empty()) << what << "\n" << r.out;
  }
  CmdResult unreachable =
      RunGismo({"watch", "--timeout-ms", "0", "--address", "unix:/nonexistent/gismo.sock"});
  EXPECT_EQ(unreachable.code, 3);
  EXPECT_NE(unreachable.err.find("cannot connect"), std::string::npos) << unreachable.err;
  EXPECT_TRUE(unreachable.out.empty()) << unreachable.out;
}

TEST_F(CliTest, BadInputGivesClearErrorsAndExitCodes) {
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  const std::string dir = "/tmp";
  const std::vector<Case> cases = {
      {{"stat", "123"}, 2, "40 hex digits"},
      {{"stat", "zz112233445566778899aabbccddeeff00112233"}, 2, "not a hex digit"},
      {{"stat"}, 2, "missing object ID"},
      {{"stat", kId1, "--name", "n"}, 2, "give one of an object ID, --name or --bound"},
      {{"put", kId1}, 2, "missing FILE"},
      {{"put", kId1, "/nonexistent/file"}, 6, "cannot open '/nonexistent/file'"},
      {{"put", kId1, dir}, 6, "is a directory"},
      {{"get", kId1, "--json"}, 2, "--json needs an output FILE"},
      // With --name, two positionals are an ID and a FILE (the second was
      // ignored, the first taken as the file).
      {{"get", "--name", "n", "out", "-"}, 2, "give one of an object ID, --name or --bound"},
      {{"put", "--name", "n", "in", "-"}, 2, "give one of an object ID, --name or --bound"},
      {{"ls", "--prefix", "xyz"}, 2, "--prefix"},
      {{"ls", "--sort", "colour"}, 2, "colour"},
      {{"ls", "--bogus"}, 2, "--bogus"},
      {{"frobnicate"}, 2, "frobnicate"},
  };
  for (const auto& c : cases) {
    CmdResult r = Gismo(c.args);
    std::string what;
    for (const auto& a : c.args) what += a + " ";
    EXPECT_EQ(r.code, c.code) << what << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << what << "\n" << r.err;
    EXPECT_TRUE(r.out.empty()) << what << "\n" << r.out;
  }
  // No command at all.
  CmdResult none = RunGismo({});
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("subcommand is required"), std::string::npos) << none.err;
  // Storing an existing id is a store error.
  ASSERT_EQ(Gismo({"put", kId1, "-"}, "a").code, 0);
  CmdResult dup = Gismo({"put", kId1, "-"}, "b");
  EXPECT_EQ(dup.code, 1);
  EXPECT_NE(dup.err.find("cannot store object"), std::string::npos) << dup.err;
}

TEST_F(CliTest, AddressFromFlagEnvironmentAndErrors) {
  CmdResult unreachable = RunGismo({"status", "--address", "unix:/nonexistent/gismo.sock"});
  EXPECT_EQ(unreachable.code, 3);
  EXPECT_NE(unreachable.err.find("cannot connect to the gismo manager at "
                                 "unix:/nonexistent/gismo.sock"),
            std::string::npos)
      << unreachable.err;
  CmdResult malformed = RunGismo({"ls", "--address", "carrier-pigeon"});
  EXPECT_EQ(malformed.code, 2);
  EXPECT_NE(malformed.err.find("bad address"), std::string::npos) << malformed.err;
  // $GISMO_ADDRESS is the default.
  CmdResult env = RunGismo({"status", "--json"}, {}, {"GISMO_ADDRESS=" + mgr_.address()});
  ASSERT_EQ(env.code, 0) << env.err;
  EXPECT_EQ(json::parse(env.out)["address"], mgr_.address());
}

TEST_F(CliTest, HelpExplainsCommandsAndExitCodes) {
  CmdResult top = RunGismo({"--help"});
  EXPECT_EQ(top.code, 0);
  for (const char* word : {"status", "ls", "stat", "put", "get", "rm", "watch", "Exit status"}) {
    EXPECT_NE(top.out.find(word), std::string::npos) << word;
  }
  CmdResult ls = RunGismo({"ls", "--help"});
  EXPECT_EQ(ls.code, 0);
  for (const char* word : {"--state", "--node", "--prefix", "--sort", "--reverse", "--limit",
                           "--json", "--address", "GISMO_ADDRESS"}) {
    EXPECT_NE(ls.out.find(word), std::string::npos) << word;
  }
  CmdResult watch = RunGismo({"watch", "--help"});
  EXPECT_EQ(watch.code, 0);
  for (const char* word : {"--count", "--timeout-ms", "--no-initial", "--json", "seq"}) {
    EXPECT_NE(watch.out.find(word), std::string::npos) << word;
  }
  CmdResult put = RunGismo({"put", "--help"});
  EXPECT_NE(put.out.find("--metadata"), std::string::npos);
  EXPECT_NE(put.out.find("--name"), std::string::npos);
}

TEST_F(CliTest, MetricsCountObjectsClientsAndRecoveries) {
  ASSERT_NE(metrics_port_, 0) << mgr_.ready_line();
  std::string m0 = Scrape();
  EXPECT_EQ(Metric(m0, "gismo_objects{state=\"sealed\"}"), 0);
  EXPECT_NE(m0.find("# TYPE gismo_manager_clients_joined_total counter"), std::string::npos);
  EXPECT_NE(m0.find("gismo_info{version=\"" + std::string(gismo_version()) + "\""),
            std::string::npos)
      << m0;
  const double joined0 = Metric(m0, "gismo_manager_clients_joined_total");
  const double left0 = Metric(m0, "gismo_manager_clients_left_total");
  EXPECT_GT(Metric(m0, "gismo_heap_capacity_bytes"), 0);
  EXPECT_EQ(Metric(m0, "gismo_manager_epoch"), 1);
  EXPECT_GE(Metric(m0, "gismo_manager_uptime_seconds"), 0);
  EXPECT_EQ(Metric(m0, "gismo_metrics_skipped_shards"), 0);

  ASSERT_EQ(Gismo({"put", kId1, "-"}, std::string(1000, 'z')).code, 0);
  ASSERT_EQ(Gismo({"put", kId2, "-", "--metadata", "abc"}, "q").code, 0);
  std::string m1 = Scrape();
  EXPECT_EQ(Metric(m1, "gismo_objects{state=\"sealed\"}"), 2);
  EXPECT_EQ(Metric(m1, "gismo_object_bytes{state=\"sealed\"}"), 1000 + 1 + 3);
  EXPECT_EQ(Metric(m1, "gismo_manager_clients_joined_total"), joined0 + 2);
  EXPECT_EQ(Metric(m1, "gismo_manager_clients_left_total"), left0 + 2);
  EXPECT_GT(Metric(m1, "gismo_heap_used_bytes"), Metric(m0, "gismo_heap_used_bytes"));

  // A client on node 3 that dies: counted per node, then recovered.
  int ready[2], go[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(go), 0);
  pid_t child = fork();
  if (child == 0) {
    setenv("GISMO_NODE", "3", 1);
    auto c = gismo::Client::Connect(mgr_.address());
    if (!c.ok()) _exit(1);
    auto b = c->Create(gismo::ObjectId::FromHex(kId3).value(), 64);
    char x = b.ok() ? 'y' : 'n';
    if (write(ready[1], &x, 1) != 1) _exit(1);
    if (read(go[0], &x, 1) < 0) _exit(1);  // killed before this returns
    _exit(0);
  }
  char x = 0;
  ASSERT_EQ(read(ready[0], &x, 1), 1);
  ASSERT_EQ(x, 'y');
  std::string m2 = Scrape();
  EXPECT_EQ(Metric(m2, "gismo_clients{node=\"3\"}"), 1) << m2;
  EXPECT_EQ(Metric(m2, "gismo_objects{state=\"unsealed\"}"), 1);
  const double recovered0 = Metric(m2, "gismo_manager_clients_recovered_total");
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  std::string m3;
  EXPECT_TRUE(WaitFor([&] {
    m3 = Scrape();
    return Metric(m3, "gismo_manager_clients_recovered_total") == recovered0 + 1;
  })) << m3;
  EXPECT_EQ(Metric(m3, "gismo_clients{node=\"3\"}"), -1);
  EXPECT_EQ(Metric(m3, "gismo_objects{state=\"unsealed\"}"), 0);  // aborted by recovery
  EXPECT_GT(Metric(m3, "gismo_manager_recovery_seconds_total"), 0);
  for (int fd : {ready[0], ready[1], go[0], go[1]}) close(fd);
  EXPECT_EQ(Metric(m3, "gismo_owner_threads"), 0) << "a coherent region has no owner";
  EXPECT_EQ(Metric(m3, "gismo_client_slots"), GismoJson({"status"})["clients"]["max"]);
}

// A non-coherent region served by three owner threads: the two past the
// first run in client slots of their own, which neither `gismo status` nor
// the metrics count as slots for clients; the metrics give the threads.
TEST(OwnerThreadsMetricsTest, HelperSlotsAreNotClientSlots) {
  ManagerProcess mgr =
      gismo::testing::StartManagerProcess({"--coherence", "non-coherent", "--owner-threads", "3",
                                           "--metrics", "tcp:127.0.0.1:0", "--lease-ms", "0"},
                                          "64MiB");
  std::smatch m;
  const std::string& ready = mgr.ready_line();
  ASSERT_TRUE(std::regex_search(ready, m, std::regex("metrics=tcp:127\\.0\\.0\\.1:([0-9]+)")))
      << ready;
  const uint16_t port = static_cast<uint16_t>(std::stoi(m[1]));
  std::string resp =
      HttpRequest(port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
  const std::string text = resp.substr(resp.find("\r\n\r\n") + 4);
  EXPECT_EQ(Metric(text, "gismo_owner_threads"), 3) << text;
  CmdResult st = RunGismo({"status", "--json", "--address", mgr.address()});
  ASSERT_EQ(st.code, 0) << st.err;
  const json s = json::parse(st.out);
  EXPECT_EQ(s["region"]["coherence"], "non-coherent");
  EXPECT_EQ(Metric(text, "gismo_client_slots"), s["clients"]["max"]) << text;
  EXPECT_EQ(Metric(text, "gismo_clients_connected"), 0) << "helpers are no clients";
}

TEST_F(CliTest, MetricsEndpointSpeaksHttp) {
  ASSERT_NE(metrics_port_, 0);
  std::string notfound = HttpRequest(metrics_port_, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(notfound.rfind("HTTP/1.1 404", 0), 0u) << notfound;
  std::string post = HttpRequest(metrics_port_, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(post.rfind("HTTP/1.1 405", 0), 0u) << post;
  std::string head = HttpRequest(metrics_port_, "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK", 0), 0u) << head;
  EXPECT_NE(head.find("text/plain; version=0.0.4"), std::string::npos);
  EXPECT_EQ(head.substr(head.find("\r\n\r\n") + 4), "");
  std::string garbage = HttpRequest(metrics_port_, "hello\r\n\r\n");
  EXPECT_EQ(garbage.rfind("HTTP/1.1 400", 0), 0u) << garbage;
  // The manager still serves clients and scrapes afterwards.
  EXPECT_EQ(Gismo({"status"}).code, 0);
  EXPECT_GE(Metric(Scrape(), "gismo_manager_clients_joined_total"), 1);
}

// Scrapers that connect and say nothing (or too little, too slowly) hold at
// most 16 of the manager's descriptors, and keep no real scraper out: one
// more closes the oldest that has not sent its whole request (they were
// refused with 503 while 16 slow peers held every slot, 10 s each).
TEST_F(CliTest, MetricsConnectionsAreCappedAndSlowPeersGoFirst) {
  ASSERT_NE(metrics_port_, 0);
  auto open_idle = [&] {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(metrics_port_);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    EXPECT_EQ(send(fd, "G", 1, MSG_NOSIGNAL), 1);  // a request begun, never ended
    return fd;
  };
  std::vector<int> idle;
  for (int i = 0; i < 16; ++i) idle.push_back(open_idle());
  std::string served = HttpRequest(metrics_port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(served.rfind("HTTP/1.1 200", 0), 0u) << served;
  // The oldest idle one was closed to make room.
  char c;
  EXPECT_EQ(recv(idle[0], &c, 1, 0), 0) << "the oldest idle peer is still open";
  for (int fd : idle) close(fd);
}

// What the request reader takes and how it refuses: a request ended with
// bare LFs is answered; a head over 16 KiB is refused with 431 rather than
// closed without a word; a reply sent while input is still unread (a
// request with a body) reaches the peer whole, not cut by a reset.
TEST_F(CliTest, MetricsRequestsEndedByBareLineFeedsOrTooLong) {
  ASSERT_NE(metrics_port_, 0);
  std::string bare = HttpRequest(metrics_port_, "GET /metrics HTTP/1.0\n\n");
  EXPECT_EQ(bare.rfind("HTTP/1.1 200", 0), 0u) << bare;
  std::string huge = HttpRequest(
      metrics_port_, "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(20000, 'p') + "\r\n\r\n");
  EXPECT_EQ(huge.rfind("HTTP/1.1 431", 0), 0u) << huge.substr(0, 200);
  std::string post =
      HttpRequest(metrics_port_, "POST /metrics HTTP/1.1\r\nContent-Length: 300000\r\n\r\n" +
                                     std::string(300000, 'b'));
  EXPECT_EQ(post.rfind("HTTP/1.1 405", 0), 0u) << post.substr(0, 200);
  EXPECT_NE(post.find("only GET and HEAD are supported"), std::string::npos);
}

// Evictions are counted in `gismo status` (text and JSON) and in the metrics
// as they happen, with the bytes the evicted blocks took.
TEST_F(CliTest, StatusAndMetricsCountEvictions) {
  ASSERT_NE(metrics_port_, 0) << mgr_.ready_line();
  json s0 = GismoJson({"status"});
  EXPECT_EQ(s0["evictions"]["objects"], 0);
  EXPECT_EQ(s0["evictions"]["bytes"], 0);
  CmdResult h0 = Gismo({"status"});
  EXPECT_NE(h0.out.find("evicted:        0 objects, 0 B\n"), std::string::npos) << h0.out;
  const std::string m0 = Scrape();
  EXPECT_EQ(Metric(m0, "gismo_evictions_total"), 0) << m0;
  EXPECT_EQ(Metric(m0, "gismo_evicted_bytes_total"), 0) << m0;

  gismo::Client c = Connect();
  const std::string block(100000, 'e');  // 7 heap pages each
  for (const char* id : {kId1, kId2, kId3}) {
    ASSERT_TRUE(c.Put(gismo::ObjectId::FromHex(id).value(), block, GISMO_CREATE_EVICTABLE).ok());
  }
  ASSERT_TRUE(c.Put(gismo::ObjectId::FromName("pinned"), block).ok());  // never evicted
  auto evicted = c.Evict(~0ull);
  ASSERT_TRUE(evicted.ok()) << evicted.status().ToString();
  ASSERT_EQ(*evicted, 3u * 7 * 16384);

  json s1 = GismoJson({"status"});
  EXPECT_EQ(s1["evictions"]["objects"], 3);
  EXPECT_EQ(s1["evictions"]["bytes"], *evicted);
  EXPECT_EQ(s1["objects"]["sealed"], 1);
  CmdResult h1 = Gismo({"status"});
  ASSERT_EQ(h1.code, 0) << h1.err;
  EXPECT_NE(h1.out.find("evicted:        3 objects, 336.00 KiB\n"), std::string::npos) << h1.out;
  const std::string m1 = Scrape();
  EXPECT_EQ(Metric(m1, "gismo_evictions_total"), 3) << m1;
  EXPECT_EQ(Metric(m1, "gismo_evicted_bytes_total"), static_cast<double>(*evicted)) << m1;
  EXPECT_NE(m1.find("# TYPE gismo_evictions_total counter"), std::string::npos);
  EXPECT_NE(m1.find("# TYPE gismo_evicted_bytes_total counter"), std::string::npos);
}

// `gismo watch` names an eviction "evicted", apart from a client's delete,
// in JSON and in its table.
TEST_F(CliTest, WatchNamesEvictionsEvicted) {
  const gismo::ObjectId pinned = gismo::ObjectId::FromHex(kId1).value();
  const gismo::ObjectId cached = gismo::ObjectId::FromHex(kId2).value();
  gismo::Client c = Connect();
  ASSERT_TRUE(c.Put(pinned, "pinned").ok());
  RunningCmd watch = GismoStart({"watch", "--json", "--count", "4", "--timeout-ms", "20000"});
  // The initial listing shows that the watch has subscribed.
  ASSERT_TRUE(WaitFor([&] { return ReadFile(watch.out).find(kId1) != std::string::npos; }))
      << ReadFile(watch.err);
  ASSERT_TRUE(c.Put(cached, "cached", GISMO_CREATE_EVICTABLE).ok());
  ASSERT_EQ(*c.Evict(~0ull), 64u);  // the evictable one only: one 64-byte block
  ASSERT_TRUE(c.Delete(pinned).ok());
  CmdResult r = FinishGismo(watch);
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  std::vector<json> j;
  for (const auto& l : lines) j.push_back(json::parse(l));
  EXPECT_EQ(j[0]["event"], "sealed");
  EXPECT_EQ(j[1]["event"], "sealed");
  EXPECT_EQ(j[1]["id"], kId2);
  EXPECT_EQ(j[2]["event"], "evicted");
  EXPECT_EQ(j[2]["id"], kId2);
  EXPECT_EQ(j[2]["size"], 6);
  EXPECT_EQ(j[3]["event"], "deleted");
  EXPECT_EQ(j[3]["id"], kId1);

  // The table.
  RunningCmd table = GismoStart({"watch", "--no-initial", "--count", "2"});
  ASSERT_TRUE(WaitFor([&] { return ReadFile(table.out).rfind("TIME", 0) == 0; }))
      << ReadFile(table.err);
  ASSERT_TRUE(c.Put(cached, "cached", GISMO_CREATE_EVICTABLE).ok());
  ASSERT_EQ(*c.Evict(1), 64u);
  CmdResult t = FinishGismo(table);
  ASSERT_EQ(t.code, 0) << t.err;
  lines = Lines(t.out);
  ASSERT_EQ(lines.size(), 3u) << t.out;
  std::smatch m;
  const std::regex row("(\\S+)  (\\w+) +([0-9a-f]{40}) +.*");
  ASSERT_TRUE(std::regex_match(lines[1], m, row)) << lines[1];
  EXPECT_EQ(m[2], "sealed");
  ASSERT_TRUE(std::regex_match(lines[2], m, row)) << lines[2];
  EXPECT_EQ(m[2], "evicted");
  EXPECT_EQ(m[3], kId2);
}

// The manager logs one line per client joining, leaving and being recovered.
TEST(ManagerLogTest, OneLinePerClientEvent) {
  const std::string name = gismo::testing::UniqueName("log");
  const std::string region = "/dev/shm/" + name, sock = "/tmp/" + name + ".sock";
  const std::string log = "/tmp/" + name + ".log";
  gismo::testing::ManagerProcessOptions o;
  o.binary = GISMO_MANAGER_BIN;
  o.region = region;
  o.size = "64MiB";
  o.listen = {"unix:" + sock};
  o.log_level = "info";
  o.stderr_path = log;
  ManagerProcess manager(o);
  ASSERT_TRUE(manager.Start()) << manager.error();
  const std::string address = "unix:" + sock;
  ASSERT_EQ(RunGismo({"status", "--address", address}).code, 0);  // joins and leaves
  pid_t child = fork();
  if (child == 0) {
    auto c = gismo::Client::Connect(address);
    if (!c.ok()) _exit(1);
    kill(getpid(), SIGKILL);  // dies connected
  }
  waitpid(child, nullptr, 0);
  auto count = [&](const std::string& what) {
    std::istringstream in(ReadFile(log));
    int n = 0;
    for (std::string l; std::getline(in, l);) n += l.find(what) != std::string::npos;
    return n;
  };
  EXPECT_TRUE(WaitFor([&] { return count("is gone") == 1; })) << ReadFile(log);
  EXPECT_EQ(count(") joined"), 2) << ReadFile(log);
  EXPECT_EQ(count(") disconnected"), 1) << ReadFile(log);
  manager.Stop();
  unlink(sock.c_str());
  unlink(log.c_str());
}

// gismo-manager --evict-percent P: a create that does not fit evicts at
// least the larger of its own block and P% of the heap, and no more than
// one object past that (the sweep stops once it has enough); 20% without
// the flag.
TEST(EvictPercentTest, ACreateThatDoesNotFitEvictsThePercentOfTheHeap) {
  constexpr uint64_t kObject = 1 << 20;  // one 64-page run each, no slack
  for (uint64_t percent : {50, 20, 35}) {
    SCOPED_TRACE("--evict-percent " + std::to_string(percent));
    std::vector<std::string> args;
    if (percent != 20) args = {"--evict-percent", std::to_string(percent)};
    ManagerProcess m = gismo::testing::StartManagerProcess(args, "64MiB");
    gismo::Client c = gismo::testing::MustConnect(m.address());
    const uint64_t heap = c.Usage()->capacity_bytes;
    const uint64_t fit = heap / kObject;
    const std::string data(kObject, 'p');
    for (uint64_t i = 0; i < fit; ++i) {
      ASSERT_TRUE(
          c.Put(gismo::ObjectId::FromName("o" + std::to_string(i)), data, GISMO_CREATE_EVICTABLE)
              .ok());
    }
    ASSERT_EQ(c.Usage()->evictions, 0u) << "the heap held " << fit << " objects";
    // One more does not fit: it evicts P% of the heap (more than its own block).
    ASSERT_TRUE(c.Put(gismo::ObjectId::FromName("one-more"), data, GISMO_CREATE_EVICTABLE).ok());
    const gismo_usage_t u = *c.Usage();
    const uint64_t share = heap / 100 * percent;
    EXPECT_GE(u.evicted_bytes, share);
    EXPECT_LT(u.evicted_bytes, share + kObject);
    EXPECT_EQ(u.evicted_bytes, u.evictions * kObject);
    EXPECT_EQ(u.sealed_count, fit + 1 - u.evictions);
  }
}

// A stream (a pipe: its size is known at its end) larger than the heap's
// free space is stored when evictable objects can make room for it, as a
// file of that size is: the create evicts. (Before, reading stopped at the
// free space.)
TEST(EvictPercentTest, AStreamLargerThanTheFreeSpaceEvictsAsAFileDoes) {
  ManagerProcess m = gismo::testing::StartManagerProcess({}, "16MiB");
  gismo::Client c = gismo::testing::MustConnect(m.address());
  const std::string block(1 << 20, 'e');
  for (int i = 0; c.Usage()->largest_free_bytes >= (2u << 20); ++i) {
    ASSERT_TRUE(
        c.Put(gismo::ObjectId::FromName("e" + std::to_string(i)), block, GISMO_CREATE_EVICTABLE)
            .ok());
  }
  const std::string stream(3 << 20, 's');
  CmdResult put =
      RunGismo({"put", "--name", "s", "-", "--address", m.address()}, stream, {}, /*piped=*/true);
  ASSERT_EQ(put.code, 0) << put.err;
  EXPECT_GT(c.Usage()->evictions, 0u);
  auto got = c.Get(gismo::ObjectId::FromName("s"), 0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->size(), stream.size());
}

// Every program exits 2 on a usage error (doc/operations.md, "Exit status"),
// with a message (the first problem CLI11 finds, which may be a missing
// required option), and 0 after --help.
TEST(UsageTest, EveryProgramExitsTwoOnAUsageError) {
  for (const char* bin : {GISMO_MANAGER_BIN, GISMO_FSCK_BIN, GISMO_AGENT_BIN, GISMO_CLI_BIN}) {
    gismo::testing::SpawnOptions o;
    o.argv = {bin, "--no-such-option"};
    o.stderr_to_stdout = true;
    gismo::testing::RunResult r = gismo::testing::Run(o, 30);
    EXPECT_EQ(r.exit_code, 2) << bin << ": " << r.output;
    EXPECT_NE(r.output.find("Run with --help"), std::string::npos) << bin << ": " << r.output;
    if (std::string(bin) == GISMO_CLI_BIN) {  // it said "A subcommand is required"
      EXPECT_NE(r.output.find("unknown option '--no-such-option'"), std::string::npos) << r.output;
    }
    o.argv = {bin, "--help"};
    r = gismo::testing::Run(o, 30);
    EXPECT_EQ(r.exit_code, 0) << bin << ": " << r.output;
  }
}

// Integer options take plain decimal numbers in range (CLI11 alone reads
// "010" as 8, "0x10" as 16, and "-1" as the largest unsigned value), and the
// waits have upper bounds.
TEST(UsageTest, IntegerOptionsAreDecimalAndInRange) {
  const std::vector<std::vector<std::string>> bad = {
      {GISMO_AGENT_BIN, "--node", "010"},
      {GISMO_AGENT_BIN, "--node", "0x10"},
      {GISMO_AGENT_BIN, "--node", "-1"},
      {GISMO_AGENT_BIN, "--node", "99999999999999999999"},
      {GISMO_AGENT_BIN, "--node", "1", "--kill-timeout-ms", "-1"},
      {GISMO_CLI_BIN, "fence", "--node", "010"},
      {GISMO_CLI_BIN, "fence", "--node", "4294967296"},  // nodes are 32-bit (it was exit 1)
      {GISMO_CLI_BIN, "fence", "--slot", "4294967296"},
      // With 0, every get that waits was refused.
      {GISMO_MANAGER_BIN, "--region", "/dev/shm/never", "--max-wait-ids", "0"},
      {GISMO_MANAGER_BIN, "--region", "/dev/shm/never", "--max-total-wait-ids", "0"},
      {GISMO_FSCK_BIN, "--online", "--lock-wait-ms", "-1"},
      {GISMO_FSCK_BIN, "--online", "--lock-wait-ms", "3600001"},
      {GISMO_MANAGER_BIN, "--region", "/dev/shm/never", "--lock-wait-ms", "0x10"},
      {GISMO_MANAGER_BIN, "--region", "/dev/shm/never", "--lock-wait-ms", "3600001"},
  };
  for (const auto& argv : bad) {
    gismo::testing::SpawnOptions o;
    o.argv = argv;
    o.stderr_to_stdout = true;
    gismo::testing::RunResult r = gismo::testing::Run(o, 30);
    std::string cmd;
    for (const auto& a : argv) cmd += " " + a;
    EXPECT_EQ(r.exit_code, 2) << cmd << ": " << r.output;
    EXPECT_NE(r.output.find("Run with --help"), std::string::npos) << cmd << ": " << r.output;
  }
}

// A numeric --group must be a gid: 4294967295 is chown's "no change", and
// larger numbers were cut to 32 bits.
TEST(GroupTest, AGroupIdOutOfRangeIsRefused) {
  for (const char* bad : {"4294967295", "4294967296", "99999999999999999999"}) {
    const std::string region = "/dev/shm/" + gismo::testing::UniqueName("grp");
    gismo::testing::SpawnOptions o;
    o.argv = {GISMO_MANAGER_BIN, "--region", region,     "--format",
              "--size",          "64MiB",    "--listen", "unix:" + TempPath("grp.sock"),
              "--group",         bad};
    o.stderr_to_stdout = true;
    gismo::testing::RunResult r = gismo::testing::Run(o, 60);
    EXPECT_NE(r.exit_code, 0) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("group id " + std::string(bad) + " is out of range"), std::string::npos)
        << bad << ": " << r.output;
    unlink(region.c_str());
  }
}

// A command without --address or $GISMO_ADDRESS names, when it cannot
// connect, the address the library tried (gismo_default_address): its own
// copy of the rules once named unix:/tmp/gismo-0/gismo.sock, as root, where
// the library had tried unix:/run/gismo/gismo.sock.
TEST(UsageTest, ACommandNamesTheDefaultAddressTheLibraryTried) {
  RunningCmd c = StartGismo({"stat", "--name", "a"}, {}, {"XDG_RUNTIME_DIR=/nonexistent-gismo"});
  CmdResult r = FinishGismo(c);
  if (r.code != 3) GTEST_SKIP() << "a manager serves the default address here: " << r.err;
  std::smatch named, tried;
  ASSERT_TRUE(std::regex_search(r.err, tried, std::regex("cannot connect to ((unix|tcp):\\S+?): ")))
      << r.err;
  ASSERT_TRUE(std::regex_search(r.err, named, std::regex("manager at (\\S+?): "))) << r.err;
  EXPECT_EQ(named[1], tried[1]) << r.err;
  if (geteuid() == 0) {
    EXPECT_EQ(named[1], "unix:/run/gismo/gismo.sock") << r.err;
  }
}

// Values no region or address can take are usage errors (exit 2, as CLI11's
// own), found before the region is touched: no file is left at a new
// region's path, and --format does not wipe a region it will not serve.
TEST(UsageTest, ValuesNoRegionOrAddressCanTakeTouchNoRegion) {
  const std::string sock = "unix:" + TempPath("usage.sock");
  const std::vector<std::vector<std::string>> bad = {
      {"--event-capacity", "3"},
      {"--max-refs-per-client", "3"},
      {"--size", "0"},
      {"--size", "1"},
      {"--listen", "bogus:x"},
      {"--listen", sock, "--listen", sock},
      {"--listen", sock, "--metrics", "unix:/tmp/metrics.sock"},
      {"--listen", sock, "--max-output-bytes", "100"},
      // Durations it cannot keep to, or that overflowed a deadline: a lease
      // shorter than the beats that renew it fenced live clients (or, a
      // manager's, the live manager) at once.
      {"--lease-ms", "40"},
      {"--lease-ms", "3600001"},
      {"--manager-lease-ms", "10"},
      {"--fence-timeout-ms", "4294967295"},
      {"--agent-timeout-ms", "0"},
      // Files and names that are not there (they failed with exit 1 after
      // the region's file was made).
      {"--group", "no-such-group-gismo"},
      {"--key-file", "/nonexistent/gismo.key"},
  };
  for (const auto& args : bad) {
    const std::string region = "/dev/shm/" + gismo::testing::UniqueName("usage");
    gismo::testing::SpawnOptions o;
    o.argv = {GISMO_MANAGER_BIN, "--region", region};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.stderr_to_stdout = true;
    gismo::testing::RunResult r = gismo::testing::Run(o, 60);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << args[1] << ": " << r.output;
    if (args[0] == "--size") {  // the size asked for, not the 2 MiB it rounds up to
      EXPECT_NE(r.output.find("region size " + args[1] + " B"), std::string::npos) << r.output;
    }
    if (args[0].ends_with("-ms")) {
      EXPECT_NE(r.output.find(args[0] + " must be"), std::string::npos) << r.output;
    }
    EXPECT_NE(access(region.c_str(), F_OK), 0) << args[0] << " " << args[1] << ": a file was made";
    unlink(region.c_str());
  }
  const std::string precious = "/dev/shm/" + gismo::testing::UniqueName("precious");
  WriteFile(precious, "not a region, but someone's");
  gismo::testing::SpawnOptions o;
  o.argv = {GISMO_MANAGER_BIN, "--region", precious,   "--format",
            "--size",          "64MiB",    "--listen", "tcp:bogus"};
  o.stderr_to_stdout = true;
  gismo::testing::RunResult r = gismo::testing::Run(o, 60);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(ReadFile(precious), "not a region, but someone's");
  unlink(precious.c_str());

  // A start that fails after making the region (an address that cannot be
  // bound: its directory is not there) removes it: a region in /dev/shm is
  // memory. One that was there stays.
  const std::string region = "/dev/shm/" + gismo::testing::UniqueName("unbound");
  const std::string nowhere = "unix:" + TempPath("no-dir") + "/x.sock";
  for (int start = 0; start < 2; ++start) {
    gismo::testing::SpawnOptions u;
    u.argv = {GISMO_MANAGER_BIN, "--region", region, "--size", "64MiB", "--listen", nowhere};
    u.stderr_to_stdout = true;
    gismo::testing::RunResult failed = gismo::testing::Run(u, 60);
    EXPECT_EQ(failed.exit_code, 1) << failed.output;
    EXPECT_NE(failed.output.find("cannot listen"), std::string::npos) << failed.output;
    if (start == 0) {
      EXPECT_NE(access(region.c_str(), F_OK), 0) << "the region it made was left";
      // Made by a manager that starts, then stops.
      gismo::testing::SpawnOptions m;
      m.argv = {GISMO_MANAGER_BIN,
                "--region",
                region,
                "--size",
                "64MiB",
                "--listen",
                "unix:" + TempPath("made.sock")};
      m.capture_stdout = true;
      gismo::testing::Process made;
      ASSERT_TRUE(made.Start(m)) << made.error();
      std::string line;
      ASSERT_TRUE(made.ReadLineContaining("gismo-manager ready", 60, &line)) << line;
      made.KillAndWait(SIGTERM);
    } else {
      struct stat st {};
      EXPECT_EQ(stat(region.c_str(), &st), 0) << "the region that was there is gone";
      EXPECT_EQ(st.st_size, off_t{64} << 20);
    }
  }
  unlink(region.c_str());
}

// A SIGTERM while --prefault materializes the heap (minutes, for a large
// region) stops the manager as one after its ready line does: exit 0, its
// socket removed, its region whole. It killed the manager, which left the
// socket file behind.
TEST(UsageTest, ASignalDuringThePrefaultStopsTheManagerCleanly) {
  const std::string region = "/dev/shm/" + gismo::testing::UniqueName("prefault");
  struct RemovedAtTheEnd {
    const std::string& path;
    ~RemovedAtTheEnd() { unlink(path.c_str()); }
  } removed{region};  // whatever assertion ends the test: the region is memory
  const std::string sock = TempPath("prefault.sock");
  const RemovedAtTheEnd sock_removed{sock};
  gismo::testing::SpawnOptions o;
  o.argv = {GISMO_MANAGER_BIN, "--region",   region,     "--size",
            "512MiB",          "--prefault", "--listen", "unix:" + sock};
  o.capture_stdout = true;
  o.stderr_to_stdout = true;
  gismo::testing::Process m;
  ASSERT_TRUE(m.Start(o)) << m.error();
  std::string line;
  ASSERT_TRUE(m.ReadLineContaining("prefaulting", 60, &line)) << m.output();
  EXPECT_EQ(access(sock.c_str(), F_OK), 0) << "it listens before it prefaults";
  ASSERT_TRUE(m.Signal(SIGTERM));
  std::string rest;
  EXPECT_TRUE(m.ReadToEnd(60, &rest));
  int status = 0;
  ASSERT_TRUE(m.WaitForExit(60, &status));
  EXPECT_EQ(gismo::testing::ExitCode(status), 0) << m.output();
  EXPECT_NE(m.output().find("shutting down"), std::string::npos) << m.output();
  EXPECT_NE(access(sock.c_str(), F_OK), 0) << "the socket file was left";
  // The region is whole, and free: the next manager serves it at once.
  o.argv = {GISMO_MANAGER_BIN, "--region", region, "--listen", "unix:" + sock};
  gismo::testing::Process next;
  ASSERT_TRUE(next.Start(o)) << next.error();
  EXPECT_TRUE(next.ReadLineContaining("gismo-manager ready", 60, &line)) << next.output();
  next.KillAndWait(SIGTERM);
}

// A node agent that cannot reach its manager says so at once (and once a
// minute while it lasts), instead of retrying in silence.
TEST(AgentTest, AnAgentThatCannotReachItsManagerSaysSo) {
  const std::string region = TempPath("agent-region");
  WriteFile(region, "");
  gismo::testing::SpawnOptions o;
  o.argv = {GISMO_AGENT_BIN, "--node", "1", "--manager", "unix:/nonexistent/gismo.sock",
            "--region",      region};
  o.capture_stdout = true;
  o.stderr_to_stdout = true;
  o.parent_death_signal = SIGKILL;
  gismo::testing::Process agent;
  ASSERT_TRUE(agent.Start(o)) << agent.error();
  std::string line;
  EXPECT_TRUE(agent.ReadLineContaining("cannot reach the manager", 30, &line)) << line;
  EXPECT_NE(line.find("unix:/nonexistent/gismo.sock"), std::string::npos) << line;
  agent.KillAndWait(SIGKILL);
  unlink(region.c_str());
}

// An agent given a region path that is not there (a typo) could carry out
// no fence order: it says so at start (usage error), instead of running on
// and failing each order while a suspected client waits.
TEST(AgentTest, ARegionThatIsNotThereIsRefusedAtStart) {
  gismo::testing::SpawnOptions o;
  o.argv = {GISMO_AGENT_BIN, "--node",           "1", "--manager", "unix:/nonexistent/gismo.sock",
            "--region",      "/nonexistent/typo"};
  o.stderr_to_stdout = true;
  gismo::testing::RunResult r = gismo::testing::Run(o, 30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--region /nonexistent/typo"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("ready"), std::string::npos) << r.output;
}

TEST(EvictPercentTest, OutOfRangeValuesAreRefused) {
  for (const char* bad : {"0", "101", "-5", "half"}) {
    gismo::testing::SpawnOptions o;
    o.argv = {GISMO_MANAGER_BIN,
              "--region",
              "/dev/shm/" + gismo::testing::UniqueName("pct"),
              "--size",
              "64MiB",
              "--evict-percent",
              bad};
    o.stderr_to_stdout = true;
    gismo::testing::RunResult r = gismo::testing::Run(o, 30);
    // The usage error status of every gismo program, never a signal or a
    // region made.
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
    EXPECT_NE(access(o.argv[2].c_str(), F_OK), 0) << bad << ": a region was made";
    EXPECT_NE(r.output.find("--evict-percent"), std::string::npos) << bad << ": " << r.output;
  }
}

}  // namespace
