// Integration tests of the `stload` command-line tool. Each test runs the built binary
// (STLOAD_BINARY) without a shell, stdin from /dev/null, and checks stdout, stderr and the exit
// status: 0 success; 1 invalid, corrupt or unreadable checkpoint, with stderr's first line
// "stload: error: <file base name>: <reason>"; 2 usage error, with a message.
//
// Expected values are computed here, independently of the library: headers are read by hand and
// hashed with the SHA-256 below, not with stload's code or OpenSSL.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/sanitizers.h"
#include "support/test_files.h"
#include "synth/synthetic_checkpoint.h"

extern char** environ;

namespace stload {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::MakeFileBytes;
using test::ReadFile;
using test::TempDir;
using test::WriteFile;

constexpr int kExitOk = 0;
constexpr int kExitBadCheckpoint = 1;
constexpr int kExitUsage = 2;

// ------------------------------------------------------------------------------------------------
// Running the binary.

struct RunResult {
  int exit_code = -1;  // the exit status; 128 + the signal number if a signal ended it
  bool signaled = false;
  bool timed_out = false;
  std::string out;
  std::string err;

  std::string FirstErrLine() const { return err.substr(0, err.find('\n')); }
};

std::ostream& operator<<(std::ostream& os, const RunResult& r) {
  auto clip = [](const std::string& s) { return s.size() > 2000 ? s.substr(0, 2000) + "..." : s; };
  return os << "exit " << r.exit_code << (r.signaled ? " (signal)" : "")
            << (r.timed_out ? " (timed out)" : "") << "\n--- stdout ---\n"
            << clip(r.out) << "\n--- stderr ---\n"
            << clip(r.err);
}

double NowSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// How a child of SpawnStload is set up: where its stdout goes, and limits it runs under.
struct SpawnOptions {
  enum class Stdout {
    kPipe,        // read by the test
    kDevFull,     // every write fails with ENOSPC
    kClosed,      // descriptor 1 closed
    kBrokenPipe,  // a pipe whose read end is closed, SIGPIPE ignored: writes fail with EPIPE
  };
  Stdout out = Stdout::kPipe;
  uid_t uid = 0;                        // run as this user (and group) when not 0; needs root
  std::optional<rlim_t> nproc;          // RLIMIT_NPROC: processes and threads of that user
  std::optional<rlim_t> address_space;  // RLIMIT_AS in bytes
};

struct Spawned {
  pid_t pid = -1;
  int out = -1;  // -1 unless Stdout::kPipe
  int err = -1;
};

// Starts `stload args...` (fork and exec: the limits and the user are set in the child, before
// exec, with async-signal-safe calls only).
Spawned SpawnStload(const std::vector<std::string>& args, const SpawnOptions& options) {
  std::vector<std::string> argv_strings = {STLOAD_BINARY};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  int out_pipe[2] = {-1, -1};
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  using Out = SpawnOptions::Stdout;
  if (options.out == Out::kPipe || options.out == Out::kBrokenPipe) {
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  }
  if (options.out == Out::kBrokenPipe) {
    ::close(out_pipe[0]);
    out_pipe[0] = -1;
  }
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int null_in = ::open("/dev/null", O_RDONLY);
    if (null_in < 0 || ::dup2(null_in, 0) < 0) ::_exit(126);
    switch (options.out) {
      case Out::kPipe:
      case Out::kBrokenPipe:
        if (::dup2(out_pipe[1], 1) < 0) ::_exit(126);
        break;
      case Out::kDevFull: {
        const int full = ::open("/dev/full", O_WRONLY);
        if (full < 0 || ::dup2(full, 1) < 0) ::_exit(126);
        break;
      }
      case Out::kClosed:
        ::close(1);
        break;
    }
    if (::dup2(err_pipe[1], 2) < 0) ::_exit(126);
    // Whatever the test runner inherited (a shell's `&` ignores SIGINT), the tool starts with the
    // default dispositions, except SIGPIPE where asked (an ignored signal stays ignored in exec).
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::signal(sig, SIG_DFL);
    if (options.out == Out::kBrokenPipe) ::signal(SIGPIPE, SIG_IGN);
    if (options.address_space) {
      const rlimit limit{*options.address_space, *options.address_space};
      if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(126);
    }
    if (options.nproc) {
      const rlimit limit{*options.nproc, *options.nproc};
      if (::setrlimit(RLIMIT_NPROC, &limit) != 0) ::_exit(126);
    }
    if (options.uid != 0) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(options.uid) != 0 ||
          ::setuid(options.uid) != 0) {
        ::_exit(126);
      }
    }
    ::execv(STLOAD_BINARY, argv.data());
    ::_exit(127);
  }
  ::close(err_pipe[1]);
  if (out_pipe[1] >= 0) ::close(out_pipe[1]);
  return {pid, out_pipe[0], err_pipe[0]};
}

// Collects what a spawned stload prints until it ends (killed after `timeout_s`, reported as
// timed out). `on_output`, if given, is called after every read with what has arrived so far.
RunResult WaitForStload(Spawned child, double timeout_s,
                        const std::function<void(const RunResult&)>& on_output = {}) {
  RunResult result;
  pollfd fds[2] = {{child.out, POLLIN, 0}, {child.err, POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = (child.out >= 0) + (child.err >= 0);
  const double deadline = NowSeconds() + timeout_s;
  char buffer[65536];
  while (open_count > 0) {
    const double left = deadline - NowSeconds();
    if (left <= 0) {
      result.timed_out = true;
      ::kill(child.pid, SIGKILL);
      break;
    }
    const int ready = ::poll(fds, 2, static_cast<int>(std::min(left, 0.05) * 1000) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) throw std::runtime_error("poll failed");
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      }
    }
    if (on_output) on_output(result);
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  int status = 0;
  while (::waitpid(child.pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error("waitpid failed");
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signaled = true;
    result.exit_code = 128 + WTERMSIG(status);
  }
  return result;
}

RunResult RunStloadWith(const std::vector<std::string>& args, const SpawnOptions& options,
                        double timeout_s = 60) {
  return WaitForStload(SpawnStload(args, options), timeout_s);
}

// Runs `stload args...` and returns what it printed and how it ended. A run that outlives
// `timeout_s` is killed and reported as timed out (no input may hang the tool).
RunResult RunStload(const std::vector<std::string>& args, double timeout_s = 60) {
  return RunStloadWith(args, {}, timeout_s);
}

// ------------------------------------------------------------------------------------------------
// An independent SHA-256 (FIPS 180-4), checked against the standard's test vectors below.

constexpr uint32_t kSha256K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void Sha256Block(uint32_t state[8], const unsigned char* block) {
  uint32_t w[64];
  for (int i = 0; i < 16; ++i) {
    w[i] = (uint32_t{block[4 * i]} << 24) | (uint32_t{block[4 * i + 1]} << 16) |
           (uint32_t{block[4 * i + 2]} << 8) | uint32_t{block[4 * i + 3]};
  }
  for (int i = 16; i < 64; ++i) {
    const uint32_t s0 = Rotr(w[i - 15], 7) ^ Rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const uint32_t s1 = Rotr(w[i - 2], 17) ^ Rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
  uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
  for (int i = 0; i < 64; ++i) {
    const uint32_t t1 = h + (Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                        kSha256K[i] + w[i];
    const uint32_t t2 = (Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  state[0] += a;
  state[1] += b;
  state[2] += c;
  state[3] += d;
  state[4] += e;
  state[5] += f;
  state[6] += g;
  state[7] += h;
}

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data) {
  uint32_t state[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  const size_t full_blocks = data.size() / 64;
  for (size_t i = 0; i < full_blocks; ++i) Sha256Block(state, bytes + 64 * i);
  unsigned char tail[128] = {};
  const size_t rest = data.size() - 64 * full_blocks;
  if (rest > 0) std::memcpy(tail, bytes + 64 * full_blocks, rest);
  tail[rest] = 0x80;
  const size_t tail_size = rest + 9 <= 64 ? 64 : 128;
  const uint64_t bits = static_cast<uint64_t>(data.size()) * 8;
  for (int i = 0; i < 8; ++i) tail[tail_size - 1 - i] = static_cast<unsigned char>(bits >> (8 * i));
  Sha256Block(state, tail);
  if (tail_size == 128) Sha256Block(state, tail + 64);
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (uint32_t word : state) {
    for (int shift = 28; shift >= 0; shift -= 4) hex.push_back(kDigits[(word >> shift) & 15]);
  }
  return hex;
}

TEST(CliTestSupport, Sha256MatchesStandardVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// ------------------------------------------------------------------------------------------------
// Reading checkpoints by hand.

struct RawTensor {
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
  std::string file;  // base name of the file holding it
  uint64_t begin = 0;
  uint64_t end = 0;
  std::string sha256;
};

struct RawFile {
  std::vector<RawTensor> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
  uint64_t data_bytes = 0;
};

// Reads a safetensors file: 8-byte little-endian header length N, N bytes of JSON, the data.
RawFile ReadSafetensors(const std::string& path) {
  const std::string bytes = ReadFile(path);
  if (bytes.size() < 8) throw std::runtime_error(path + ": shorter than 8 bytes");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  if (n > bytes.size() - 8) throw std::runtime_error(path + ": header length past the end");
  const json header = json::parse(bytes.substr(8, n));
  const std::string_view data = std::string_view(bytes).substr(8 + n);
  RawFile file;
  file.data_bytes = data.size();
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      for (const auto& [k, v] : value.items()) file.metadata[k] = v.get<std::string>();
      continue;
    }
    RawTensor t;
    t.name = key;
    t.dtype = value.at("dtype").get<std::string>();
    t.shape = value.at("shape").get<std::vector<uint64_t>>();
    t.file = fs::path(path).filename().string();
    t.begin = value.at("data_offsets").at(0).get<uint64_t>();
    t.end = value.at("data_offsets").at(1).get<uint64_t>();
    if (t.begin > t.end || t.end > data.size()) throw std::runtime_error(path + ": bad offsets");
    t.sha256 = Sha256Hex(data.substr(t.begin, t.end - t.begin));
    file.tensors.push_back(std::move(t));
  }
  return file;
}

// Every tensor of a checkpoint (a .safetensors file, or a directory with or without an index),
// keyed by name. std::string's operator< compares bytes as unsigned char, so the map's order is
// byte order.
std::map<std::string, RawTensor> ReadCheckpointByHand(const std::string& path) {
  std::vector<std::string> files;
  if (fs::is_regular_file(path)) {
    files.push_back(path);
  } else if (fs::exists(fs::path(path) / "model.safetensors.index.json")) {
    const json index = json::parse(ReadFile(path + "/model.safetensors.index.json"));
    std::set<std::string> names;
    for (const auto& [tensor, file] : index.at("weight_map").items()) names.insert(file);
    for (const std::string& name : names) files.push_back(path + "/" + name);
  } else {
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.path().extension() == ".safetensors") files.push_back(entry.path().string());
    }
  }
  std::map<std::string, RawTensor> tensors;
  for (const std::string& file : files) {
    for (RawTensor& t : ReadSafetensors(file).tensors) {
      const std::string name = t.name;
      if (!tensors.emplace(name, std::move(t)).second) {
        throw std::runtime_error("tensor " + name + " in two files");
      }
    }
  }
  return tensors;
}

// What `stload hash` must print for these tensors.
std::string ExpectedHashOutput(const std::map<std::string, RawTensor>& tensors) {
  std::string out;
  for (const auto& [name, t] : tensors) out += t.sha256 + "  " + name + "\n";
  return out;
}

uint64_t Product(const std::vector<uint64_t>& shape) {
  uint64_t p = 1;
  for (uint64_t d : shape) p *= d;
  return p;
}

std::set<std::string> ListDir(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename());
  return names;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool Contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// ------------------------------------------------------------------------------------------------
// Making checkpoints.

// A small Llama-style checkpoint (12 tensors, about 132 KiB) written by the synth library.
synth::Summary WriteLlama(const std::string& dir, uint32_t shards, uint64_t seed = 1,
                          synth::Preset preset = synth::Preset::kLlama) {
  synth::Spec spec;
  spec.preset = preset;
  spec.total_bytes = 64 << 10;
  spec.shards = shards;
  spec.seed = seed;
  Result<synth::Summary> summary = synth::WriteCheckpoint(dir, spec);
  if (!summary.ok()) throw std::runtime_error("WriteCheckpoint: " + summary.status().ToString());
  return *summary;
}

struct HandTensor {
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
  uint64_t bytes;
};

// A safetensors file holding `tensors` back to back in the given order (data from MakeFileBytes).
std::string HandMadeFile(const std::vector<HandTensor>& tensors,
                         const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const HandTensor& t : tensors) {
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  return MakeFileBytes(header.dump(), offset);
}

// Names chosen so that byte order differs from natural order ("a.10" < "a.2"), from
// case-insensitive order ("B" < "_" < "a") and from locale order (UTF-8 "é" after "z"); with a
// scalar and zero-size tensors. Listed out of name order.
const std::vector<HandTensor>& EdgeCaseTensors() {
  static const std::vector<HandTensor> tensors = {
      {"b", "F32", {2, 3}, 24},
      {"a.2", "BF16", {5}, 10},
      {"\xc3\xa9l\xc3\xa8ve", "U8", {7}, 7},
      {"a.10", "F16", {3, 1}, 6},
      {"empty", "F32", {0}, 0},
      {"B", "I64", {2}, 16},
      {"scalar", "F64", {}, 8},
      {"_", "I8", {3, 0}, 0},
      {"zeta", "BOOL", {9}, 9},
  };
  return tensors;
}

// ------------------------------------------------------------------------------------------------
// --version, --help.

TEST(CliBasics, VersionPrintsNameAndVersion) {
  const RunResult r = RunStload({"--version"});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  ASSERT_TRUE(StartsWith(r.out, "stload ")) << r;
  // "stload 1.2.3": a version number follows the name.
  const std::string version = r.out.substr(7, r.out.find('\n') - 7);
  EXPECT_FALSE(version.empty()) << r;
  EXPECT_NE(version.find_first_of("0123456789"), std::string::npos) << r;
  EXPECT_NE(version, "unknown") << r;
  EXPECT_EQ(r.err, "");
}

TEST(CliBasics, HelpListsEverySubcommand) {
  for (const char* flag : {"--help", "-h"}) {
    SCOPED_TRACE(flag);
    const RunResult r = RunStload({flag});
    ASSERT_EQ(r.exit_code, kExitOk) << r;
    EXPECT_TRUE(Contains(r.out, "Usage")) << r;
    for (const char* command : {"inspect", "hash", "load", "bench", "make-checkpoint"}) {
      EXPECT_TRUE(Contains(r.out, command)) << command << "\n" << r;
    }
    EXPECT_TRUE(Contains(r.out, "--version")) << r;
    EXPECT_EQ(r.err, "");
  }
}

TEST(CliBasics, SubcommandHelpMentionsItsOptions) {
  const std::map<std::string, std::vector<std::string>> options = {
      {"inspect", {"PATH", "--json"}},
      {"hash", {"PATH", "--threads", "--no-mmap", "--direct-io", "--extra-config"}},
      {"bench",
       {"PATH", "--threads", "--modes", "--consumers", "--cold", "--warm", "--both", "--repeat",
        "--json", "--chart", "--cache-drop"}},
      {"make-checkpoint",
       {"DIR", "--preset", "--total", "--shards", "--dtype", "--seed", "--force"}},
  };
  for (const auto& [command, wanted] : options) {
    SCOPED_TRACE(command);
    // Help needs no PATH: it is answered before the required arguments are checked.
    const RunResult r = RunStload({command, "--help"});
    ASSERT_EQ(r.exit_code, kExitOk) << r;
    EXPECT_TRUE(Contains(r.out, "stload " + command)) << r;
    for (const std::string& option : wanted) {
      EXPECT_TRUE(Contains(r.out, option)) << option << "\n" << r;
    }
    EXPECT_EQ(r.err, "");
  }
}

// ------------------------------------------------------------------------------------------------
// Usage errors of the command line itself.

void ExpectUsageError(const std::vector<std::string>& args,
                      const std::vector<std::string>& mentions = {}) {
  std::string joined;
  for (const std::string& a : args) joined += " " + a;
  SCOPED_TRACE("stload" + joined);
  const RunResult r = RunStload(args);
  EXPECT_EQ(r.exit_code, kExitUsage) << r;
  EXPECT_EQ(r.out, "") << r;
  EXPECT_TRUE(StartsWith(r.err, "stload: ")) << r;
  EXPECT_GT(r.FirstErrLine().size(), std::string("stload: usage error: ").size()) << r;
  for (const std::string& mention : mentions) {
    EXPECT_TRUE(Contains(r.err, mention)) << "stderr should mention " << mention << "\n" << r;
  }
}

TEST(CliUsage, NoSubcommand) { ExpectUsageError({}); }

TEST(CliUsage, UnknownSubcommandIsNamed) {
  ExpectUsageError({"frobnicate"}, {"frobnicate"});
  TempDir dir;
  WriteLlama(dir.path(), 1);
  ExpectUsageError({"verify", dir.path()}, {"verify"});
}

TEST(CliUsage, UnknownFlag) {
  TempDir dir;
  WriteLlama(dir.File("ckpt"), 2);
  ExpectUsageError({"--bogus"}, {"--bogus"});
  ExpectUsageError({"inspect", dir.File("ckpt"), "--bogus"}, {"--bogus"});
  ExpectUsageError({"hash", dir.File("ckpt"), "--bogus"}, {"--bogus"});
  ExpectUsageError({"hash", dir.File("ckpt"), "--json"}, {"--json"});  // inspect's flag, not hash's
  ExpectUsageError({"make-checkpoint", dir.File("new"), "--bogus"}, {"--bogus"});
  EXPECT_FALSE(fs::exists(dir.File("new")));
}

TEST(CliUsage, MissingPath) {
  ExpectUsageError({"inspect"}, {"PATH"});
  ExpectUsageError({"inspect", "--json"}, {"PATH"});
  ExpectUsageError({"hash"}, {"PATH"});
  ExpectUsageError({"hash", "--threads", "2"}, {"PATH"});
  ExpectUsageError({"make-checkpoint"}, {"DIR"});
}

TEST(CliUsage, ExtraPositional) {
  TempDir dir;
  WriteLlama(dir.File("ckpt"), 2);
  ExpectUsageError({"inspect", dir.File("ckpt"), dir.File("ckpt")});
  ExpectUsageError({"hash", dir.File("ckpt"), "extra"}, {"extra"});
}

// ------------------------------------------------------------------------------------------------
// make-checkpoint.

// Checks a generated checkpoint by hand: DIR holds the shards, the index and (`with_config`)
// config.json; the index names exactly the shards and every tensor, each in the shard that holds
// it, and total_size is the sum of the tensor sizes.
void ExpectConsistentIndexedCheckpoint(const std::string& dir, uint32_t shards,
                                       bool with_config = true) {
  std::set<std::string> expected_files = {"model.safetensors.index.json"};
  if (with_config) expected_files.insert("config.json");
  char name[64];
  for (uint32_t i = 1; i <= shards; ++i) {
    std::snprintf(name, sizeof name, "model-%05u-of-%05u.safetensors", i, shards);
    expected_files.insert(name);
  }
  EXPECT_EQ(ListDir(dir), expected_files);

  const json index = json::parse(ReadFile(dir + "/model.safetensors.index.json"));
  const std::map<std::string, RawTensor> tensors = ReadCheckpointByHand(dir);
  ASSERT_EQ(index.at("weight_map").size(), tensors.size());
  std::set<std::string> used_files;
  uint64_t total = 0;
  for (const auto& [tensor, file] : index.at("weight_map").items()) {
    auto it = tensors.find(tensor);
    ASSERT_NE(it, tensors.end()) << tensor;
    EXPECT_EQ(it->second.file, file.get<std::string>()) << tensor;
    used_files.insert(file.get<std::string>());
    total += it->second.end - it->second.begin;
  }
  EXPECT_EQ(used_files.size(), shards) << "every shard holds at least one tensor";
  EXPECT_EQ(index.at("metadata").at("total_size").get<uint64_t>(), total);
}

TEST(CliMakeCheckpoint, LlamaWritesShardsAndIndex) {
  TempDir dir;
  const std::string out = dir.File("llama");
  const RunResult r = RunStload({"make-checkpoint", out, "--total", "64KiB", "--shards", "3"});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  EXPECT_EQ(r.err, "");
  ExpectConsistentIndexedCheckpoint(out, 3);
  const std::map<std::string, RawTensor> tensors = ReadCheckpointByHand(out);
  EXPECT_TRUE(tensors.count("model.embed_tokens.weight"));
  EXPECT_TRUE(tensors.count("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(tensors.count("lm_head.weight"));
  // config.json describes the tensors (tests/tools/synth_config_test.cc checks every number).
  const json config = json::parse(ReadFile(out + "/config.json"));
  EXPECT_EQ(config.at("model_type"), "llama");
  EXPECT_EQ(tensors.at("model.embed_tokens.weight").shape,
            (std::vector<uint64_t>{config.at("vocab_size").get<uint64_t>(),
                                   config.at("hidden_size").get<uint64_t>()}));
  for (const auto& [name, t] : tensors) {
    EXPECT_EQ(t.dtype, "BF16") << name;
    EXPECT_EQ(t.end - t.begin, Product(t.shape) * 2) << name;
  }
  // The default preset is llama; the same command without --preset writes the same files.
  const std::string again = dir.File("again");
  const RunResult r2 = RunStload({"make-checkpoint", again, "--preset", "llama", "--total", "64KiB",
                                  "--shards", "3"});
  ASSERT_EQ(r2.exit_code, kExitOk) << r2;
  for (const std::string& file : ListDir(out)) {
    EXPECT_EQ(ReadFile(out + "/" + file), ReadFile(again + "/" + file)) << file;
  }
}

TEST(CliMakeCheckpoint, SingleFileWritesModelSafetensors) {
  TempDir dir;
  const std::string out = dir.File("single");
  const RunResult r =
      RunStload({"make-checkpoint", out, "--preset", "single-file", "--total", "64KiB"});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  EXPECT_EQ(ListDir(out), (std::set<std::string>{"config.json", "model.safetensors"}));
  const RawFile file = ReadSafetensors(out + "/model.safetensors");
  EXPECT_GT(file.tensors.size(), 2u);
  uint64_t sum = 0;
  for (const RawTensor& t : file.tensors) sum += t.end - t.begin;
  EXPECT_EQ(sum, file.data_bytes) << "the tensors fill the data buffer";
}

TEST(CliMakeCheckpoint, ManySmallWritesSmallTensorsInShards) {
  TempDir dir;
  const std::string out = dir.File("small");
  const RunResult r = RunStload(
      {"make-checkpoint", out, "--preset", "many-small", "--total", "16KiB", "--shards", "2"});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  ExpectConsistentIndexedCheckpoint(out, 2, /*with_config=*/false);
  const std::map<std::string, RawTensor> tensors = ReadCheckpointByHand(out);
  EXPECT_EQ(tensors.size(), 32u);  // 16 KiB of 512-byte tensors
  for (const auto& [name, t] : tensors) EXPECT_EQ(t.end - t.begin, 512u) << name;
}

TEST(CliMakeCheckpoint, DeepSeekWritesFp8WeightsScalesAndConfig) {
  TempDir dir;
  const std::string out = dir.File("deepseek");
  const RunResult r = RunStload(
      {"make-checkpoint", out, "--preset", "deepseek", "--total", "8MiB", "--shards", "2"});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  ExpectConsistentIndexedCheckpoint(out, 2);
  const std::map<std::string, RawTensor> tensors = ReadCheckpointByHand(out);
  const json config = json::parse(ReadFile(out + "/config.json"));
  EXPECT_EQ(config.at("model_type"), "deepseek_v3");
  const std::string mtp =
      "model.layers." + std::to_string(config.at("num_hidden_layers").get<uint64_t>()) + ".";
  EXPECT_TRUE(tensors.count(mtp + "eh_proj.weight")) << "the multi-token prediction layer";
  std::set<std::string> dtypes;
  for (const auto& [name, t] : tensors) {
    dtypes.insert(t.dtype);
    EXPECT_EQ(t.end - t.begin, Product(t.shape) * (t.dtype == "F32" ? 4 : t.dtype == "BF16" ? 2 : 1))
        << name;
  }
  EXPECT_EQ(dtypes, (std::set<std::string>{"BF16", "F32", "F8_E4M3"}));
}

TEST(CliMakeCheckpoint, DtypeOptionSetsEveryTensor) {
  TempDir dir;
  const std::string out = dir.File("f32");
  const RunResult r = RunStload({"make-checkpoint", out, "--preset", "single-file", "--total",
                                 "64KiB", "--dtype", "F32"});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  for (const RawTensor& t : ReadSafetensors(out + "/model.safetensors").tensors) {
    EXPECT_EQ(t.dtype, "F32") << t.name;
    EXPECT_EQ(t.end - t.begin, Product(t.shape) * 4) << t.name;
  }
}

TEST(CliMakeCheckpoint, SameSeedSameBytesOtherSeedOtherBytes) {
  TempDir dir;
  auto make = [&](const std::string& name, const std::string& seed) {
    const RunResult r = RunStload({"make-checkpoint", dir.File(name), "--total", "64KiB",
                                   "--shards", "2", "--seed", seed});
    EXPECT_EQ(r.exit_code, kExitOk) << r;
    return dir.File(name);
  };
  const std::string a = make("a", "42");
  const std::string b = make("b", "42");
  const std::string c = make("c", "43");
  ASSERT_EQ(ListDir(a), ListDir(b));
  ASSERT_EQ(ListDir(a), ListDir(c));
  for (const std::string& file : ListDir(a)) {
    EXPECT_EQ(ReadFile(a + "/" + file), ReadFile(b + "/" + file)) << file;
  }
  // Another seed: the same names and shapes, but every tensor's bytes differ.
  EXPECT_EQ(ReadFile(a + "/model.safetensors.index.json"),
            ReadFile(c + "/model.safetensors.index.json"));
  const std::map<std::string, RawTensor> ta = ReadCheckpointByHand(a);
  const std::map<std::string, RawTensor> tc = ReadCheckpointByHand(c);
  ASSERT_EQ(ta.size(), tc.size());
  for (const auto& [name, t] : ta) {
    ASSERT_TRUE(tc.count(name)) << name;
    EXPECT_EQ(t.shape, tc.at(name).shape) << name;
    EXPECT_NE(t.sha256, tc.at(name).sha256) << name;
  }
}

TEST(CliMakeCheckpoint, MatchesTheSynthLibrary) {
  TempDir dir;
  const RunResult r = RunStload({"make-checkpoint", dir.File("cli"), "--total", "64KiB",
                                 "--shards", "3", "--seed", "9"});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  const synth::Summary summary = WriteLlama(dir.File("lib"), 3, 9);
  ASSERT_EQ(ListDir(dir.File("cli")),
            std::set<std::string>(summary.files.begin(), summary.files.end()));
  for (const std::string& file : summary.files) {
    EXPECT_EQ(ReadFile(dir.File("cli") + "/" + file), ReadFile(dir.File("lib") + "/" + file))
        << file;
  }
}

TEST(CliMakeCheckpoint, NonEmptyDirectoryNeedsForce) {
  TempDir dir;
  const std::string out = dir.File("busy");
  fs::create_directory(out);
  WriteFile(out + "/keep.txt", "mine");
  const RunResult r = RunStload({"make-checkpoint", out, "--total", "64KiB", "--shards", "2"});
  EXPECT_EQ(r.exit_code, kExitUsage) << r;
  EXPECT_TRUE(Contains(r.err, "--force")) << r;
  EXPECT_EQ(ListDir(out), std::set<std::string>{"keep.txt"}) << "nothing written";

  const RunResult forced =
      RunStload({"make-checkpoint", out, "--total", "64KiB", "--shards", "2", "--force"});
  ASSERT_EQ(forced.exit_code, kExitOk) << forced;
  EXPECT_EQ(ReadFile(out + "/keep.txt"), "mine");
  EXPECT_EQ(ListDir(out).size(), 5u);  // keep.txt, two shards, config.json, the index

  // An existing empty directory needs no --force.
  fs::create_directory(dir.File("empty"));
  const RunResult empty = RunStload(
      {"make-checkpoint", dir.File("empty"), "--preset", "single-file", "--total", "64KiB"});
  EXPECT_EQ(empty.exit_code, kExitOk) << empty;
  EXPECT_EQ(ListDir(dir.File("empty")),
            (std::set<std::string>{"config.json", "model.safetensors"}));
}

TEST(CliMakeCheckpoint, BadOptionsAreUsageErrors) {
  TempDir dir;
  const std::string out = dir.File("never");
  const std::vector<std::vector<std::string>> cases = {
      {"--preset", "gpt"},
      {"--preset", ""},
      {"--total", "abc"},
      {"--total", "12 parsecs"},
      {"--total", "-5MiB"},
      {"--total", "10"},  // below the 1 KiB minimum
      {"--dtype", "FLOAT32"},
      {"--dtype", "bf16x"},
      {"--shards", "0"},
      {"--shards", "-1"},
      {"--shards", "two"},
      {"--seed", "-1"},
      {"--seed", "abc"},
  };
  for (const std::vector<std::string>& extra : cases) {
    std::vector<std::string> args = {"make-checkpoint", out};
    args.insert(args.end(), extra.begin(), extra.end());
    ExpectUsageError(args, {extra[0]});
    EXPECT_FALSE(fs::exists(out)) << extra[0] << " " << extra[1] << ": nothing may be written";
  }
}

TEST(CliMakeCheckpoint, MoreShardsThanTensorsIsUsageError) {
  synth::Spec spec;
  spec.total_bytes = 64 << 10;
  Result<std::vector<synth::TensorSpec>> plan = synth::PlanTensors(spec);
  ASSERT_TRUE(plan.ok());
  const std::string too_many = std::to_string(plan->size() + 1);
  TempDir dir;
  const std::string out = dir.File("never");
  ExpectUsageError({"make-checkpoint", out, "--total", "64KiB", "--shards", too_many});
  EXPECT_FALSE(fs::exists(out));
  ExpectUsageError(
      {"make-checkpoint", out, "--preset", "many-small", "--total", "2KiB", "--shards", "5"});
  EXPECT_FALSE(fs::exists(out));
  // Exactly one tensor per shard is fine.
  const std::string exact = std::to_string(plan->size());
  const RunResult r = RunStload({"make-checkpoint", out, "--total", "64KiB", "--shards", exact});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  ExpectConsistentIndexedCheckpoint(out, static_cast<uint32_t>(plan->size()));
}

// ------------------------------------------------------------------------------------------------
// inspect.

TEST(CliInspect, TableListsEveryTensorAndTotals) {
  TempDir dir;
  WriteLlama(dir.path(), 3);
  const std::map<std::string, RawTensor> tensors = ReadCheckpointByHand(dir.path());
  const RunResult r = RunStload({"inspect", dir.path()});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  EXPECT_EQ(r.err, "");
  const std::vector<std::string> lines = Lines(r.out);
  uint64_t total = 0;
  for (const auto& [name, t] : tensors) {
    total += t.end - t.begin;
    int rows = 0;
    for (const std::string& line : lines) {
      if (!StartsWith(line, name + " ")) continue;
      ++rows;
      EXPECT_TRUE(Contains(line, t.dtype)) << line;
      EXPECT_TRUE(Contains(line, t.file)) << line;
      std::string shape = "[";
      for (size_t i = 0; i < t.shape.size(); ++i) {
        shape += (i ? ", " : "") + std::to_string(t.shape[i]);
      }
      EXPECT_TRUE(Contains(line, shape + "]")) << line;
    }
    EXPECT_EQ(rows, 1) << "one row for " << name << "\n" << r;
  }
  // A totals line: the tensor count and the total bytes.
  bool found_totals = false;
  for (const std::string& line : lines) {
    if (Contains(line, std::to_string(tensors.size()) + " tensors") &&
        Contains(line, std::to_string(total))) {
      found_totals = true;
    }
  }
  EXPECT_TRUE(found_totals) << r;
}

// Checks `stload inspect --json` output against the files read by hand.
void ExpectJsonMatches(const RunResult& r, const std::map<std::string, RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  json out;
  ASSERT_NO_THROW(out = json::parse(r.out)) << r;
  ASSERT_TRUE(out.is_object()) << r;
  ASSERT_TRUE(out.contains("tensors") && out["tensors"].is_array()) << r;
  ASSERT_TRUE(out.contains("metadata") && out["metadata"].is_object()) << r;
  ASSERT_TRUE(out.contains("total_bytes") && out["total_bytes"].is_number_unsigned()) << r;
  EXPECT_EQ(out["tensors"].size(), tensors.size());
  std::set<std::string> seen;
  uint64_t sum = 0;
  for (const json& t : out["tensors"]) {
    const std::string name = t.at("name").get<std::string>();
    SCOPED_TRACE(name);
    EXPECT_TRUE(seen.insert(name).second) << "listed twice";
    auto it = tensors.find(name);
    ASSERT_NE(it, tensors.end());
    const RawTensor& raw = it->second;
    EXPECT_EQ(t.at("dtype").get<std::string>(), raw.dtype);
    EXPECT_EQ(t.at("shape").get<std::vector<uint64_t>>(), raw.shape);
    EXPECT_EQ(t.at("file").get<std::string>(), raw.file);
    ASSERT_TRUE(t.at("data_offsets").is_array());
    ASSERT_EQ(t.at("data_offsets").size(), 2u);
    EXPECT_EQ(t.at("data_offsets")[0].get<uint64_t>(), raw.begin);
    EXPECT_EQ(t.at("data_offsets")[1].get<uint64_t>(), raw.end);
    sum += raw.end - raw.begin;
  }
  EXPECT_EQ(out["total_bytes"].get<uint64_t>(), sum);
  using StringMap = std::map<std::string, std::string>;
  EXPECT_EQ(out["metadata"].get<StringMap>(), metadata);
}

TEST(CliInspect, JsonDescribesEveryTensorOfAShardedCheckpoint) {
  TempDir dir;
  WriteLlama(dir.path(), 3);
  const std::map<std::string, RawTensor> tensors = ReadCheckpointByHand(dir.path());
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  const RunResult r = RunStload({"inspect", dir.path(), "--json"});
  ExpectJsonMatches(r, tensors, metadata);
  EXPECT_EQ(r.err, "");
  // The index file as PATH, and the flag before PATH: the same output.
  const RunResult by_index =
      RunStload({"inspect", "--json", dir.File("model.safetensors.index.json")});
  ExpectJsonMatches(by_index, tensors, metadata);
  EXPECT_EQ(by_index.out, r.out);
}

TEST(CliInspect, JsonOfAHandMadeFile) {
  TempDir dir;
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "hand made"}};
  WriteFile(dir.File("edge.safetensors"), HandMadeFile(EdgeCaseTensors(), metadata));
  const std::map<std::string, RawTensor> tensors =
      ReadCheckpointByHand(dir.File("edge.safetensors"));
  ASSERT_EQ(tensors.size(), EdgeCaseTensors().size());
  // PATH is the file itself; "file" is still its base name.
  ExpectJsonMatches(RunStload({"inspect", dir.File("edge.safetensors"), "--json"}), tensors,
                    metadata);
  // The directory holding it (no index) describes the same tensors.
  ExpectJsonMatches(RunStload({"inspect", dir.path(), "--json"}), tensors, metadata);
}

TEST(CliInspect, EmptyCheckpointIsValid) {
  TempDir dir;
  WriteFile(dir.File("empty.safetensors"), MakeFileBytes("{}", 0));
  const RunResult r = RunStload({"inspect", dir.File("empty.safetensors"), "--json"});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  const json out = json::parse(r.out);
  EXPECT_EQ(out.at("tensors"), json::array());
  EXPECT_EQ(out.at("total_bytes").get<uint64_t>(), 0u);
  const RunResult table = RunStload({"inspect", dir.File("empty.safetensors")});
  ASSERT_EQ(table.exit_code, kExitOk) << table;
  EXPECT_TRUE(Contains(table.out, "0 tensors")) << table;
  const RunResult hash = RunStload({"hash", dir.File("empty.safetensors")});
  ASSERT_EQ(hash.exit_code, kExitOk) << hash;
  EXPECT_EQ(hash.out, "");
}

// ------------------------------------------------------------------------------------------------
// hash.

// The flag combinations that must all print the same hashes.
const std::vector<std::vector<std::string>>& HashFlagCombinations() {
  static const std::vector<std::vector<std::string>> combos = {
      {},
      {"--threads", "1"},
      {"--threads", "2"},
      {"--threads", "8"},
      {"--no-mmap"},
      {"--direct-io"},
      {"--extra-config",
       R"({"enable_multithread_load": true, "num_threads": 4, "disable_mmap": true})"},
      {"--extra-config", "{}"},
      {"--threads", "3", "--no-mmap", "--direct-io", "--extra-config",
       R"({"enable_multithread_load": false, "num_threads": 1, "disable_mmap": false})"},
  };
  return combos;
}

// Runs `stload hash PATH` with every flag combination and expects exactly `expected` each time.
void ExpectHashEverywhere(const std::string& path, const std::string& expected) {
  for (const std::vector<std::string>& flags : HashFlagCombinations()) {
    std::vector<std::string> args = {"hash", path};
    args.insert(args.end(), flags.begin(), flags.end());
    std::string joined;
    for (const std::string& f : flags) joined += " " + f;
    SCOPED_TRACE("flags:" + joined);
    const RunResult r = RunStload(args);
    ASSERT_EQ(r.exit_code, kExitOk) << r;
    EXPECT_EQ(r.out, expected);
    EXPECT_FALSE(Contains(r.err, "error")) << r;
  }
}

// Checks the shape of hash output: one "<64 lowercase hex>  <name>" line per tensor, sorted by
// name in byte order.
void ExpectHashFormat(const std::string& out, size_t tensors) {
  const std::vector<std::string> lines = Lines(out);
  ASSERT_EQ(lines.size(), tensors);
  EXPECT_TRUE(out.empty() || out.back() == '\n');
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    ASSERT_GT(line.size(), 66u) << line;
    EXPECT_EQ(line.find_first_not_of("0123456789abcdef"), 64u) << line;
    EXPECT_EQ(line.substr(64, 2), "  ") << line;
    if (i > 0) {
      EXPECT_LT(lines[i - 1].substr(66), line.substr(66)) << "byte order";
    }
  }
}

TEST(CliHash, ShardedCheckpointMatchesIndependentSha256) {
  TempDir dir;
  WriteLlama(dir.path(), 3);
  const std::map<std::string, RawTensor> tensors = ReadCheckpointByHand(dir.path());
  ASSERT_GE(tensors.size(), 10u);
  const std::string expected = ExpectedHashOutput(tensors);
  ExpectHashFormat(expected, tensors.size());
  ExpectHashEverywhere(dir.path(), expected);
  // The index file as PATH.
  const RunResult r = RunStload({"hash", dir.File("model.safetensors.index.json")});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  EXPECT_EQ(r.out, expected);
}

TEST(CliHash, SingleFileAndManySmallMatchIndependentSha256) {
  TempDir dir;
  WriteLlama(dir.File("single"), 1, 5, synth::Preset::kSingleFile);
  WriteLlama(dir.File("small"), 4, 6, synth::Preset::kManySmall);
  for (const std::string& path : {dir.File("single") + "/model.safetensors", dir.File("small")}) {
    SCOPED_TRACE(path);
    const std::map<std::string, RawTensor> tensors = ReadCheckpointByHand(path);
    const std::string expected = ExpectedHashOutput(tensors);
    ExpectHashFormat(expected, tensors.size());
    ExpectHashEverywhere(path, expected);
  }
}

TEST(CliHash, SortsByNameInByteOrder) {
  TempDir dir;
  WriteFile(dir.File("edge.safetensors"), HandMadeFile(EdgeCaseTensors(), {{"format", "pt"}}));
  const std::map<std::string, RawTensor> tensors =
      ReadCheckpointByHand(dir.File("edge.safetensors"));
  // Spelled out rather than derived from std::map, which could share a mistake with the tool.
  const std::vector<std::string> order = {"B",     "_",      "a.10", "a.2",
                                          "b",     "empty",  "scalar", "zeta",
                                          "\xc3\xa9l\xc3\xa8ve"};
  std::string expected;
  for (const std::string& name : order) expected += tensors.at(name).sha256 + "  " + name + "\n";
  EXPECT_EQ(expected, ExpectedHashOutput(tensors));
  // A zero-size tensor hashes to the SHA-256 of nothing.
  EXPECT_EQ(tensors.at("empty").sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  ExpectHashEverywhere(dir.File("edge.safetensors"), expected);
}

TEST(CliHash, TensorLargerThanTheReadBuffers) {
  // 16 MiB + a few bytes: more than one 16 MiB read piece, not a multiple of any block size.
  TempDir dir;
  const uint64_t size = (16ull << 20) + 4097;
  WriteFile(dir.File("big.safetensors"),
            HandMadeFile({{"small.first", "U8", {3}, 3}, {"big", "U8", {size}, size},
                          {"small.last", "I16", {2}, 4}}));
  const std::map<std::string, RawTensor> tensors =
      ReadCheckpointByHand(dir.File("big.safetensors"));
  const std::string expected = ExpectedHashOutput(tensors);
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{}, {"--threads", "8"}, {"--no-mmap"}, {"--direct-io"}}) {
    std::vector<std::string> args = {"hash", dir.File("big.safetensors")};
    args.insert(args.end(), flags.begin(), flags.end());
    const RunResult r = RunStload(args);
    ASSERT_EQ(r.exit_code, kExitOk) << r;
    EXPECT_EQ(r.out, expected);
  }
}

// ------------------------------------------------------------------------------------------------
// Loader flags: usage errors.

TEST(CliLoadFlags, ThreadsMustBeAPositiveInteger) {
  TempDir dir;
  WriteLlama(dir.path(), 2);
  for (const char* value : {"0", "-1", "abc", "1.5", "", "2x"}) {
    ExpectUsageError({"hash", dir.path(), "--threads", value}, {"--threads"});
  }
  ExpectUsageError({"hash", dir.path(), "--threads"}, {"--threads"});  // no value
}

TEST(CliLoadFlags, BadExtraConfigIsAUsageError) {
  TempDir dir;
  WriteLlama(dir.path(), 2);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"enable_multithread_lod": true})", "enable_multithread_lod"},  // unknown key
      {R"({"num_threads": "8"})", "num_threads"},                         // wrong type
      {R"({"num_threads": 2.5})", "num_threads"},
      {R"({"disable_mmap": 1})", "disable_mmap"},
      {R"({"enable_multithread_load": "yes"})", "enable_multithread_load"},
      {R"({"num_threads": 0})", "num_threads"},
      {R"({"num_threads": -4})", "num_threads"},
      {R"({"num_threads": 8)", ""},  // invalid JSON
      {"not json", ""},
      {"", ""},
      {R"([{"num_threads": 8}])", ""},  // an array, not an object
      {"8", ""},
      {"null", ""},
  };
  for (const auto& [config, key] : cases) {
    std::vector<std::string> mentions = {"--extra-config"};
    if (!key.empty()) mentions.push_back(key);
    ExpectUsageError({"hash", dir.path(), "--extra-config", config}, mentions);
  }
}

TEST(CliLoadFlags, UsageErrorsWinOverAMissingCheckpoint) {
  // A bad flag is reported as a usage error even when PATH is bad too.
  TempDir dir;
  ExpectUsageError({"hash", dir.File("missing"), "--threads", "0"}, {"--threads"});
  ExpectUsageError({"hash", dir.File("missing"), "--extra-config", R"({"num_threads": 0})"},
                   {"num_threads"});
}

// ------------------------------------------------------------------------------------------------
// Invalid checkpoints: exit 1, the first line of stderr names the file at fault.

// Runs inspect (table and --json) and hash on `path` and expects exit 1, nothing on stdout, and
// "stload: error: <bad_file>: <reason>" as the first line of stderr.
void ExpectBadCheckpoint(const std::string& path, const std::string& bad_file,
                         const std::string& mention = "") {
  const std::vector<std::vector<std::string>> commands = {
      {"inspect", path}, {"inspect", path, "--json"}, {"hash", path}, {"load", path},
      {"bench", path, "--repeat", "1"}};
  for (const std::vector<std::string>& args : commands) {
    SCOPED_TRACE(args[0] + " " + args[1] + (args.size() > 2 ? " " + args[2] : ""));
    const RunResult r = RunStload(args);
    EXPECT_EQ(r.exit_code, kExitBadCheckpoint) << r;
    EXPECT_EQ(r.out, "") << r;
    const std::string prefix = "stload: error: " + bad_file + ": ";
    const std::string first = r.FirstErrLine();
    EXPECT_TRUE(StartsWith(first, prefix)) << "expected a first line starting with '" << prefix
                                           << "'\n"
                                           << r;
    EXPECT_GT(first.size(), prefix.size()) << "a reason follows the file name\n" << r;
    if (!mention.empty()) {
      EXPECT_TRUE(Contains(first, mention)) << mention << "\n" << r;
    }
  }
}

TEST(CliInvalidCheckpoint, TruncatedShard) {
  TempDir dir;
  WriteLlama(dir.path(), 3);
  const std::string shard = dir.File("model-00002-of-00003.safetensors");
  fs::resize_file(shard, fs::file_size(shard) - 100);
  ExpectBadCheckpoint(dir.path(), "model-00002-of-00003.safetensors");
  ExpectBadCheckpoint(dir.File("model.safetensors.index.json"), "model-00002-of-00003.safetensors");
  // Cut inside the header, and shorter than the 8-byte length.
  fs::resize_file(shard, 20);
  ExpectBadCheckpoint(dir.path(), "model-00002-of-00003.safetensors");
  fs::resize_file(shard, 5);
  ExpectBadCheckpoint(dir.path(), "model-00002-of-00003.safetensors");
  fs::resize_file(shard, 0);
  ExpectBadCheckpoint(dir.path(), "model-00002-of-00003.safetensors");
}

TEST(CliInvalidCheckpoint, TruncatedSingleFile) {
  TempDir dir;
  WriteLlama(dir.path(), 1, 1, synth::Preset::kSingleFile);
  const std::string file = dir.File("model.safetensors");
  fs::resize_file(file, fs::file_size(file) - 1);
  ExpectBadCheckpoint(file, "model.safetensors");
  ExpectBadCheckpoint(dir.path(), "model.safetensors");
}

TEST(CliInvalidCheckpoint, HeaderLengthTooLarge) {
  TempDir dir;
  const std::string path = dir.File("huge-header.safetensors");
  for (uint64_t n : {uint64_t{100000001}, uint64_t{1} << 40, ~uint64_t{0}, ~uint64_t{0} - 7,
                     uint64_t{64}}) {
    SCOPED_TRACE(n);
    std::string bytes = MakeFileBytes("{}", 0);
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    WriteFile(path, bytes);
    ExpectBadCheckpoint(path, "huge-header.safetensors");
  }
}

TEST(CliInvalidCheckpoint, InvalidJsonHeader) {
  TempDir dir;
  const std::string path = dir.File("bad-json.safetensors");
  for (const std::string header :
       {R"({"a": bad})", R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4])",
        "not json at all", "", "\xff\xfe{}", R"({"a": 1}{"b": 2})"}) {
    SCOPED_TRACE(header);
    WriteFile(path, MakeFileBytes(header, 4));
    ExpectBadCheckpoint(path, "bad-json.safetensors");
  }
  // In one shard of an indexed checkpoint: that shard is named, not the directory.
  WriteLlama(dir.File("ckpt"), 3);
  WriteFile(dir.File("ckpt") + "/model-00003-of-00003.safetensors", MakeFileBytes("{oops", 0));
  ExpectBadCheckpoint(dir.File("ckpt"), "model-00003-of-00003.safetensors");
}

TEST(CliInvalidCheckpoint, MissingShardNamedByTheIndex) {
  TempDir dir;
  WriteLlama(dir.path(), 3);
  fs::remove(dir.File("model-00002-of-00003.safetensors"));
  ExpectBadCheckpoint(dir.path(), "model-00002-of-00003.safetensors");
  ExpectBadCheckpoint(dir.File("model.safetensors.index.json"), "model-00002-of-00003.safetensors");
}

TEST(CliInvalidCheckpoint, IndexIsNotValidJson) {
  TempDir dir;
  WriteLlama(dir.path(), 3);
  for (const std::string text : {R"({"weight_map": {)", "", "garbage", R"({"a": 1} trailing)"}) {
    SCOPED_TRACE(text);
    WriteFile(dir.File("model.safetensors.index.json"), text);
    ExpectBadCheckpoint(dir.path(), "model.safetensors.index.json");
    ExpectBadCheckpoint(dir.File("model.safetensors.index.json"), "model.safetensors.index.json");
  }
}

TEST(CliInvalidCheckpoint, NonexistentPath) {
  TempDir dir;
  ExpectBadCheckpoint(dir.File("does-not-exist.safetensors"), "does-not-exist.safetensors");
  ExpectBadCheckpoint(dir.File("no-such-dir"), "no-such-dir");
  ExpectBadCheckpoint(dir.File("no-such-dir") + "/model.safetensors", "model.safetensors");
}

TEST(CliInvalidCheckpoint, EmptyDirectory) {
  TempDir dir;
  fs::create_directory(dir.File("empty"));
  ExpectBadCheckpoint(dir.File("empty"), "empty");
  ExpectBadCheckpoint(dir.File("empty") + "/", "empty");
  // Files that are not shards do not count.
  WriteFile(dir.File("empty") + "/README.md", "not a shard");
  ExpectBadCheckpoint(dir.File("empty"), "empty");
}

// ------------------------------------------------------------------------------------------------
// bench.

// Runs a small bench and returns its JSON report.
json RunBench(const std::string& ckpt, const std::vector<std::string>& flags, RunResult* result,
              const std::string& json_path) {
  std::vector<std::string> args = {"bench", ckpt, "--json", json_path};
  args.insert(args.end(), flags.begin(), flags.end());
  *result = RunStload(args, 120);
  if (result->exit_code != kExitOk) return json();
  return json::parse(ReadFile(json_path));
}

const json* FindLimit(const json& report, const std::string& cache, const std::string& name) {
  for (const json& l : report["limits"]) {
    if (l["cache"] == cache && l["name"] == name) return &l;
  }
  return nullptr;
}

TEST(CliBench, WarmRunsEveryCombinationAgainstLimitsMeasuredInTheSameRun) {
  TempDir dir;
  const synth::Summary summary = WriteLlama(dir.File("ckpt"), 2);
  RunResult r;
  const json report = RunBench(dir.File("ckpt"),
                               {"--threads", "1,2", "--modes", "pread,mmap", "--consumers",
                                "prealloc,stream,keep", "--repeat", "2", "--warm"},
                               &r, dir.File("report.json"));
  ASSERT_EQ(r.exit_code, kExitOk) << r;

  // The table: limits first, then one row per consumer, mode and thread count.
  for (const char* text : {"MEMORY", "memcpy, 1 thread", "fresh memory, 4 KiB pages, 1 thread",
                           "WARM cache", "best page-cache read", "% limit", "peak RSS"}) {
    EXPECT_TRUE(Contains(r.out, text)) << text << "\n" << r;
  }
  EXPECT_FALSE(Contains(r.out, "COLD")) << r;

  EXPECT_EQ(report["files"], 2);
  EXPECT_EQ(report["repeat"], 2);
  const uint64_t total = report["tensor_bytes"].get<uint64_t>();
  EXPECT_EQ(total, summary.bytes);
  for (const char* name : {"page_cache_read_1", "page_cache_read", "memcpy_1", "memcpy_all",
                           "fresh_4k_1", "fresh_huge_all", "fresh_huge"}) {
    const std::string cache = std::string(name).rfind("page", 0) == 0 ? "warm" : "memory";
    const json* limit = FindLimit(report, cache, name);
    ASSERT_NE(limit, nullptr) << name;
    EXPECT_EQ((*limit)["gb_per_s"].size(), 2u) << name;
    EXPECT_GT((*limit)["median_gb_per_s"].get<double>(), 0) << name;
  }

  ASSERT_EQ(report["runs"].size(), 3u * 2 * 2);
  std::set<std::string> seen;
  for (const json& run : report["runs"]) {
    const std::string id = run["consumer"].get<std::string>() + "/" +
                           run["mode"].get<std::string>() + "/" +
                           std::to_string(run["threads"].get<int>());
    SCOPED_TRACE(id);
    seen.insert(id);
    EXPECT_EQ(run["cache"], "warm");
    ASSERT_EQ(run["repetitions"].size(), 2u);
    for (const json& rep : run["repetitions"]) {
      // Every byte of the checkpoint was loaded, by the consumer, mode and threads asked for.
      EXPECT_EQ(rep["bytes"].get<uint64_t>(), total);
      EXPECT_EQ(rep["consumer"], run["consumer"]);
      EXPECT_EQ(rep["threads"], run["threads"]);
      EXPECT_EQ(rep["read_path"], run["mode"]);
      EXPECT_GT(rep["peak_rss_bytes"].get<uint64_t>(), 0u);
    }
    const double gbps = run["median_gb_per_s"].get<double>();
    EXPECT_NEAR(gbps, total / run["median_seconds"].get<double>() / 1e9, 1e-9 + gbps * 1e-9);
    const double limit = run["limit_gb_per_s"].get<double>();
    if (run["consumer"] == "keep" && run["mode"] == "mmap") {
      EXPECT_EQ(limit, 0) << "mapping the page cache copies nothing: no limit applies";
    } else {
      ASSERT_GT(limit, 0);
      EXPECT_NEAR(run["ratio_to_limit"].get<double>(), gbps / limit, 1e-9);
    }
    EXPECT_GE(run["threads_started"].get<int>(), 1);
    EXPECT_LE(run["threads_started"].get<int>(), run["threads"].get<int>());
    if (run["consumer"] == "keep" && run["mode"] == "pread") {
      // Every byte lands in fresh memory: the best first touch can bound it.
      EXPECT_LE(limit, (*FindLimit(report, "memory", "fresh_huge"))["median_gb_per_s"].get<double>());
    }
    if (run["consumer"] == "stream") {
      EXPECT_LE(limit, (*FindLimit(report, "memory", "memcpy_1"))["median_gb_per_s"].get<double>());
    }
  }
  EXPECT_EQ(seen.size(), 12u);
}

TEST(CliBench, ColdEmptiesTheCacheAndComparesWithTheBestRawRead) {
  TempDir dir;
  WriteLlama(dir.File("ckpt"), 2);
  RunResult r;
  // fadvise: only this checkpoint's pages are dropped, not the whole machine's cache.
  const json report =
      RunBench(dir.File("ckpt"),
               {"--threads", "1", "--modes", "pread", "--consumers", "prealloc", "--repeat", "1",
                "--cold", "--cache-drop", "fadvise"},
               &r, dir.File("report.json"));
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  const std::string method = report["cache_drop_method"];
  EXPECT_EQ(method, "posix_fadvise(DONTNEED)");
  // The drop is checked: nothing else maps these files, so they really left the cache.
  EXPECT_LE(report["runs"][0]["resident_before"].get<double>(), 0.05) << report.dump(2);
  EXPECT_TRUE(Contains(r.out, "empty the page cache before each repetition with " + method)) << r;
  const json* raw = FindLimit(report, "cold", "raw_read");
  ASSERT_NE(raw, nullptr) << report.dump(2);
  ASSERT_EQ(report["runs"].size(), 1u);
  const json& run = report["runs"][0];
  EXPECT_EQ(run["cache"], "cold");
  EXPECT_EQ(run["limit"], "best raw read");
  EXPECT_EQ(run["limit_gb_per_s"], (*raw)["median_gb_per_s"]);
  // The best raw read is the best of the raw reads measured.
  double best = 0;
  for (const json& l : report["limits"]) {
    if (l["cache"] == "cold" && l["name"] != "raw_read") best = std::max(best, l["median_gb_per_s"].get<double>());
  }
  EXPECT_EQ((*raw)["median_gb_per_s"].get<double>(), best);
}

TEST(CliBench, BadListsAreUsageErrors) {
  TempDir dir;
  WriteLlama(dir.File("ckpt"), 1);
  const std::string ckpt = dir.File("ckpt");
  ExpectUsageError({"bench", ckpt, "--threads", "0"}, {"--threads"});
  ExpectUsageError({"bench", ckpt, "--threads", "1,x"}, {"--threads", "'x'"});
  ExpectUsageError({"bench", ckpt, "--threads", ""}, {"--threads"});
  ExpectUsageError({"bench", ckpt, "--modes", "pread,fast"}, {"--modes", "'fast'"});
  ExpectUsageError({"bench", ckpt, "--consumers", "eat"}, {"--consumers", "'eat'"});
  ExpectUsageError({"bench", ckpt, "--repeat", "0"}, {"--repeat"});
  ExpectUsageError({"bench", ckpt, "--cold", "--warm"}, {"--cold"});
  ExpectUsageError({"bench", ckpt, "--both", "--cold"}, {"--both"});
  ExpectUsageError({"bench", ckpt, "--cache-drop", "maybe"}, {"--cache-drop"});
  // Usage errors win over a missing checkpoint.
  ExpectUsageError({"bench", dir.File("missing"), "--threads", "0"}, {"--threads"});
}

// The chart needs Debian's python3-matplotlib, which the README's set-up command installs.
bool MatplotlibAvailable() {
  return std::system("/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") == 0;
}

TEST(CliBench, ChartIsDrawn) {
  if (!MatplotlibAvailable()) GTEST_SKIP() << "/usr/bin/python3 cannot import matplotlib";
  TempDir dir;
  WriteLlama(dir.File("ckpt"), 2);
  const RunResult r = RunStload({"bench", dir.File("ckpt"), "--threads", "1,2", "--modes",
                                 "pread,mmap", "--repeat", "1", "--chart", dir.File("chart.svg")},
                                120);
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  const std::string svg = ReadFile(dir.File("chart.svg"));
  EXPECT_TRUE(Contains(svg, "<svg")) << svg.substr(0, 200);
  // The limit line's label and the panels' titles are in the picture.
  EXPECT_TRUE(Contains(svg, "best page-cache read"));
  EXPECT_TRUE(Contains(svg, "warm cache, stream"));
}

// ------------------------------------------------------------------------------------------------
// Issue 16: what an adversarial probe found (items 6, 7, 9, 10, 13, 14, 15).

// A user id no process on the machine runs as, so that RLIMIT_NPROC counts only the tool's own
// threads (it is not enforced for root).
constexpr uid_t kUnusedUid = 54321;

// Item 6. A FIFO renamed over a shard after the bench opened the checkpoint: the bench reads
// through the descriptors it validated, and the `stload load` child, which opens the path anew,
// refuses the FIFO naming it; nothing waits for a writer that never comes.
TEST(CliIssue16, BenchDoesNotHangOnAFifoRenamedOverAShard) {
  TempDir dir;
  WriteLlama(dir.File("ckpt"), 2);
  const std::string shard = "model-00001-of-00002.safetensors";
  ASSERT_EQ(::mkfifo(dir.File("fifo").c_str(), 0644), 0);
  bool renamed = false;
  // The header line is printed after Checkpoint::Open and before the first limit that reads the
  // files (the memory limits come first, tens of milliseconds at least). Ten repetitions, so that
  // on a loaded machine a late rename still comes before most of the load children open the file.
  const std::string target = dir.File("ckpt") + "/" + shard;
  auto rename_once_opened = [&](const RunResult& so_far) {
    if (!renamed && Contains(so_far.out, "stload bench: ")) {
      renamed = ::rename(dir.File("fifo").c_str(), target.c_str()) == 0;
    }
  };
  const RunResult r = WaitForStload(
      SpawnStload({"bench", dir.File("ckpt"), "--threads", "1", "--modes", "pread", "--consumers",
                   "prealloc", "--repeat", "10", "--warm"},
                  {}),
      30, rename_once_opened);
  ASSERT_TRUE(renamed) << r;
  EXPECT_FALSE(r.timed_out) << r;
  EXPECT_EQ(r.exit_code, kExitBadCheckpoint) << r;
  EXPECT_TRUE(StartsWith(r.FirstErrLine(), "stload: error: " + shard + ": ")) << r;
  EXPECT_TRUE(Contains(r.FirstErrLine(), "not a regular file")) << r;
}

// Item 7. The system refuses hashing threads (RLIMIT_NPROC for a user that runs nothing else):
// hash then hashes on fewer threads with the same output; when not even a reader thread can be
// started, a one-line error naming the checkpoint, never an abort.
TEST(CliIssue16, HashCopesWhenTheSystemRefusesThreads) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the tool as an unused user id";
  if (test::kUnderAddressSanitizer) {
    GTEST_SKIP() << "LeakSanitizer's exit check needs a thread that RLIMIT_NPROC refuses";
  }
  if (std::thread::hardware_concurrency() < 2) {
    GTEST_SKIP() << "hash starts no extra thread on 1 CPU";
  }
  TempDir dir;
  WriteLlama(dir.File("ckpt"), 2);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);  // readable by that user
  SpawnOptions as_user;
  as_user.uid = kUnusedUid;
  const RunResult version = RunStloadWith({"--version"}, as_user);
  if (version.exit_code != kExitOk) GTEST_SKIP() << "the binary cannot run as uid " << kUnusedUid;
  const std::string expected = ExpectedHashOutput(ReadCheckpointByHand(dir.File("ckpt")));
  // 2: the main thread and one reader (the loader copes with fewer than 4); every hashing thread
  // is refused.
  SpawnOptions two = as_user;
  two.nproc = 2;
  const RunResult r = RunStloadWith({"hash", dir.File("ckpt"), "--threads", "4"}, two);
  EXPECT_EQ(r.exit_code, kExitOk) << r;
  EXPECT_EQ(r.out, expected) << r;
  // 1: not even a reader thread.
  SpawnOptions one = as_user;
  one.nproc = 1;
  const RunResult none = RunStloadWith({"hash", dir.File("ckpt"), "--threads", "4"}, one);
  EXPECT_EQ(none.exit_code, kExitBadCheckpoint) << none;
  EXPECT_EQ(none.out, "") << none;
  EXPECT_TRUE(StartsWith(none.FirstErrLine(), "stload: error: ckpt: ")) << none;
  // bench measures the memory limits on every CPU (2 or more here), so with no thread to be had
  // its first measurement on 2 threads is refused: an error naming the checkpoint, not an abort
  // and not a limit measured on fewer threads than it says.
  const RunResult bench = RunStloadWith({"bench", dir.File("ckpt"), "--repeat", "1", "--threads",
                                         "1", "--modes", "pread", "--consumers", "prealloc"},
                                        one);
  EXPECT_FALSE(bench.signaled) << bench;
  EXPECT_EQ(bench.exit_code, kExitBadCheckpoint) << bench;
  EXPECT_TRUE(StartsWith(bench.FirstErrLine(), "stload: error: ckpt: ")) << bench;
  // Whatever the limit: the right lines or a one-line error naming the checkpoint, never abort.
  for (rlim_t limit = 1; limit <= 6; ++limit) {
    SCOPED_TRACE("RLIMIT_NPROC " + std::to_string(limit));
    SpawnOptions limited = as_user;
    limited.nproc = limit;
    const RunResult any = RunStloadWith({"hash", dir.File("ckpt"), "--threads", "8"}, limited);
    EXPECT_FALSE(any.signaled) << any;
    if (any.exit_code == kExitOk) {
      EXPECT_EQ(any.out, expected) << any;
    } else {
      EXPECT_EQ(any.exit_code, kExitBadCheckpoint) << any;
      EXPECT_TRUE(StartsWith(any.FirstErrLine(), "stload: error: ckpt: ")) << any;
    }
  }
}

// Item 9. Names holding a backslash, a newline or a carriage return are escaped as GNU
// sha256sum (coreutils 9) escapes file names, so a name cannot forge a line; other bytes (ESC,
// tab) are printed as they are, as sha256sum prints them.
TEST(CliIssue16, HashEscapesNamesLikeSha256sum) {
  TempDir dir;
  const std::string forged = "x\n" + std::string(64, 'f') + "  lm_head.weight";
  const std::vector<HandTensor> named = {{"plain", "U8", {1}, 1},
                                         {"back\\slash", "U8", {2}, 2},
                                         {forged, "U8", {3}, 3},
                                         {"carriage\rreturn", "U8", {4}, 4},
                                         {"esc\x1b[2Jtab\t", "U8", {5}, 5}};
  WriteFile(dir.File("names.safetensors"), HandMadeFile(named));
  const std::map<std::string, RawTensor> tensors =
      ReadCheckpointByHand(dir.File("names.safetensors"));
  ASSERT_EQ(tensors.size(), 5u);
  auto sha = [&](const std::string& name) { return tensors.at(name).sha256; };
  // Byte order of the raw names: "back\\slash" < "carriage\r..." < "esc..." < "plain" < "x\n...".
  std::string expected;
  expected += "\\" + sha("back\\slash") + "  back\\\\slash\n";
  expected += "\\" + sha("carriage\rreturn") + "  carriage\\rreturn\n";
  expected += sha("esc\x1b[2Jtab\t") + "  esc\x1b[2Jtab\t\n";
  expected += sha("plain") + "  plain\n";
  expected += "\\" + sha(forged) + "  x\\n" + std::string(64, 'f') + "  lm_head.weight\n";
  const RunResult r = RunStload({"hash", dir.File("names.safetensors")});
  ASSERT_EQ(r.exit_code, kExitOk) << r;
  EXPECT_EQ(r.out, expected);
  EXPECT_EQ(Lines(r.out).size(), tensors.size()) << "one line per tensor, none forged";
}

// Item 9. inspect's table escapes what a terminal would obey (C0 controls, DEL, C1 controls,
// bidirectional overrides) in names, file names and metadata; --json escapes controls as JSON
// does and round-trips the names.
TEST(CliIssue16, InspectDoesNotPassTerminalControlsThrough) {
  TempDir dir;
  const std::vector<HandTensor> hostile = {
      {"clear\x1b[2J", "U8", {1}, 1},
      {"fake\nrow", "U8", {1}, 1},
      {std::string("bell\x07") + "del\x7f", "U8", {1}, 1},
      {std::string("csi\xc2\x9b") + "31m", "U8", {1}, 1},
      {std::string("bidi\xe2\x80\xae") + "txt", "U8", {1}, 1},
      {"back\\x1b", "U8", {1}, 1},
  };
  WriteFile(dir.File("hostile.safetensors"),
            HandMadeFile(hostile, {{"title\x1b]0;pwned\x07", "v\r"}}));
  const RunResult table = RunStload({"inspect", dir.File("hostile.safetensors")});
  ASSERT_EQ(table.exit_code, kExitOk) << table;
  for (const unsigned char c : table.out) {
    EXPECT_TRUE(c == '\n' || (c >= 0x20 && c != 0x7f)) << "control byte " << int(c) << "\n"
                                                       << table;
  }
  EXPECT_FALSE(Contains(table.out, "\xc2\x9b")) << table;
  EXPECT_FALSE(Contains(table.out, "\xe2\x80\xae")) << table;
  for (const char* shown : {"clear\\x1b[2J", "fake\\x0arow", "bell\\x07del\\x7f", "csi\\u009b31m",
                            "bidi\\u202etxt", "back\\\\x1b", "title\\x1b]0;pwned\\x07 = v\\x0d"}) {
    EXPECT_TRUE(Contains(table.out, shown)) << shown << "\n" << table;
  }
  // Header, one row per tensor, the totals, one metadata line: no row was faked.
  EXPECT_EQ(Lines(table.out).size(), 1 + hostile.size() + 1 + 1) << table;

  const RunResult js = RunStload({"inspect", dir.File("hostile.safetensors"), "--json"});
  ASSERT_EQ(js.exit_code, kExitOk) << js;
  for (const unsigned char c : js.out) {
    EXPECT_TRUE(c == '\n' || (c >= 0x20 && c != 0x7f)) << "control byte " << int(c) << "\n" << js;
  }
  EXPECT_FALSE(Contains(js.out, "\xc2\x9b")) << js;
  EXPECT_FALSE(Contains(js.out, "\xe2\x80\xae")) << js;
  for (const char* shown : {"clear\\u001b[2J", "csi\\u009b31m", "bidi\\u202etxt", "del\\u007f"}) {
    EXPECT_TRUE(Contains(js.out, shown)) << shown << "\n" << js;
  }
  std::set<std::string> names;
  const json parsed = json::parse(js.out);
  for (const json& t : parsed.at("tensors")) names.insert(t.at("name").get<std::string>());
  std::set<std::string> expected_names;
  for (const HandTensor& t : hostile) expected_names.insert(t.name);
  EXPECT_EQ(names, expected_names);
}

// Item 9 (and 15's NUL). An error naming a hostile tensor stays one line on stderr, with the
// name's control characters, NUL included, shown escaped.
TEST(CliIssue16, ErrorMessagesEscapeTensorNames) {
  TempDir dir;
  // Shape [2] x F32 is 8 bytes, but the offsets give 4: the error names the tensor.
  WriteFile(
      dir.File("bad.safetensors"),
      MakeFileBytes(
          R"({"bad\n\u001b[31m\u0000x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4));
  for (const char* command : {"inspect", "hash"}) {
    SCOPED_TRACE(command);
    const RunResult r = RunStload({command, dir.File("bad.safetensors")});
    EXPECT_EQ(r.exit_code, kExitBadCheckpoint) << r;
    EXPECT_TRUE(StartsWith(r.err, "stload: error: bad.safetensors: ")) << r;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line\n" << r;
    for (const unsigned char c : r.err.substr(0, r.err.size() - 1)) {
      EXPECT_TRUE(c >= 0x20 && c != 0x7f) << "control byte " << int(c) << "\n" << r;
    }
    EXPECT_TRUE(Contains(r.err, "bad\\x0a\\x1b[31m\\x00x")) << r;
  }
}

// Item 10. Output that cannot be written fails the command with sha256sum's message, whatever
// stdout is: a full device, a closed descriptor, a pipe whose reader left with SIGPIPE ignored.
TEST(CliIssue16, WriteErrorsOnStdoutFailTheCommand) {
  TempDir dir;
  WriteLlama(dir.File("ckpt"), 2);
  const std::vector<std::vector<std::string>> commands = {
      {"hash", dir.File("ckpt")},
      {"inspect", dir.File("ckpt")},
      {"inspect", dir.File("ckpt"), "--json"},
      {"load", dir.File("ckpt"), "--json", "--no-progress"},
      {"load", dir.File("ckpt"), "--no-progress"},
      {"make-checkpoint", dir.File("new"), "--total", "4KiB", "--force"},
      {"bench", dir.File("ckpt"), "--repeat", "1", "--threads", "1", "--modes", "pread",
       "--consumers", "prealloc"},
      {"--help"},
  };
  using Out = SpawnOptions::Stdout;
  const std::vector<std::pair<Out, int>> outs = {
      {Out::kDevFull, ENOSPC}, {Out::kClosed, EBADF}, {Out::kBrokenPipe, EPIPE}};
  for (const auto& [out, error] : outs) {
    for (const std::vector<std::string>& args : commands) {
      SCOPED_TRACE(args[0] + (args.size() > 2 ? " " + args[2] : "") + ", errno " +
                   std::to_string(error));
      SpawnOptions options;
      options.out = out;
      const RunResult r = RunStloadWith(args, options);
      EXPECT_EQ(r.exit_code, kExitBadCheckpoint) << r;
      EXPECT_EQ(r.err, "stload: error: write error: " + std::string(std::strerror(error)) + "\n")
          << r;
    }
  }
}

// The contents of a /proc file, "" if it cannot be read. With read(2), not a stream: reading the
// file of a process that exits meanwhile fails with ESRCH, which libstdc++'s filebuf throws.
std::string ReadProcFile(const std::string& path) {
  std::string contents;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return contents;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) {
    contents.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return contents;
}

// The pids of the children of `pid`, from /proc.
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> children;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = ReadProcFile(entry.path() / "stat");
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + paren + 1, " %c %d", &state, &ppid) == 2 && ppid == pid) {
      children.push_back(std::stoi(name));
    }
  }
  return children;
}

// The state letter of process `pid` in /proc (R, S, T, Z, ...), 0 if there is no such process.
char ProcessState(pid_t pid) {
  const std::string stat = ReadProcFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  char state = 0;
  if (paren == std::string::npos || std::sscanf(stat.c_str() + paren + 1, " %c", &state) != 1) {
    return 0;
  }
  return state;
}

// Whether process `pid` has exec'd `stload load ...` (its argv[1] is "load").
bool IsRunningLoad(pid_t pid) {
  const std::string cmdline = ReadProcFile("/proc/" + std::to_string(pid) + "/cmdline");
  const size_t first_end = cmdline.find('\0');
  return first_end != std::string::npos &&
         cmdline.compare(first_end + 1, 5, std::string("load\0", 5)) == 0;
}

// Item 13. SIGTERM (or SIGINT) to `stload bench` while its `stload load` child runs: the child is
// ended too (it is stopped here, so that it cannot finish first: the bench must also continue
// it), and the bench ends by that signal, the conventional way.
TEST(CliIssue16, TerminationSignalToBenchEndsItsLoadChild) {
  TempDir dir;
  WriteLlama(dir.File("ckpt"), 2);
  // 3 x 40 loads, one child each (the limits measured first are repeated only twice).
  std::string threads = "1";
  for (int i = 1; i < 40; ++i) threads += ",1";
  for (const int sig : {SIGTERM, SIGINT}) {
    SCOPED_TRACE(strsignal(sig));
    const Spawned bench =
        SpawnStload({"bench", dir.File("ckpt"), "--threads", threads, "--modes", "pread",
                     "--consumers", "prealloc,stream,keep", "--repeat", "2", "--warm"},
                    {});
    pid_t stopped = -1;
    const double deadline = NowSeconds() + 30;
    while (stopped < 0 && NowSeconds() < deadline) {
      for (pid_t child : ChildrenOf(bench.pid)) {
        // Only once it runs `stload load`: stopped between posix_spawn's clone and its exec, the
        // child would also hold the bench inside posix_spawn, which no one can interrupt.
        if (!IsRunningLoad(child) || ::kill(child, SIGSTOP) != 0) continue;
        for (int i = 0; i < 200 && ProcessState(child) != 'T' && ProcessState(child) != 0 &&
                        ProcessState(child) != 'Z';
             ++i) {
          ::usleep(1000);
        }
        if (ProcessState(child) == 'T') {
          stopped = child;
          break;
        }
      }
    }
    if (stopped < 0) ::kill(bench.pid, SIGKILL);
    ASSERT_GT(stopped, 0) << "no running child of the bench seen";
    ASSERT_EQ(::kill(bench.pid, sig), 0);
    const RunResult r = WaitForStload(bench, 30);
    const char left = ProcessState(stopped);
    if (left != 0 && left != 'Z') ::kill(stopped, SIGKILL);  // what the bench left behind
    EXPECT_FALSE(r.timed_out) << r;
    EXPECT_TRUE(r.signaled) << r;
    EXPECT_EQ(r.exit_code, 128 + sig) << r;
    EXPECT_TRUE(left == 0 || left == 'Z') << "the load child was left in state " << left;
  }
}

// Item 14. make-checkpoint --force never writes through a link planted in DIR, and refuses a DIR
// or an entry that is a symbolic link, naming it, before writing anything.
TEST(CliIssue16, MakeCheckpointForceDoesNotWriteThroughLinks) {
  TempDir dir;
  WriteFile(dir.File("outside"), "precious");
  // A symbolic link under the name a file is written to.
  fs::create_directory(dir.File("symlinked"));
  fs::create_symlink("../outside", dir.File("symlinked") + "/model.safetensors");
  RunResult r = RunStload({"make-checkpoint", dir.File("symlinked"), "--preset", "single-file",
                           "--total", "4KiB", "--force"});
  EXPECT_EQ(r.exit_code, kExitBadCheckpoint) << r;
  EXPECT_TRUE(StartsWith(r.FirstErrLine(), "stload: error: model.safetensors: ")) << r;
  EXPECT_TRUE(Contains(r.FirstErrLine(), "symbolic link")) << r;
  EXPECT_TRUE(ReadFile(dir.File("outside")) == "precious") << "the file outside DIR was written";
  EXPECT_EQ(ListDir(dir.File("symlinked")), std::set<std::string>{"model.safetensors"});
  // A dangling one: its target is not created.
  fs::create_directory(dir.File("dangling"));
  fs::create_symlink("../created", dir.File("dangling") + "/model.safetensors.index.json");
  r = RunStload(
      {"make-checkpoint", dir.File("dangling"), "--total", "4KiB", "--shards", "1", "--force"});
  EXPECT_EQ(r.exit_code, kExitBadCheckpoint) << r;
  EXPECT_TRUE(StartsWith(r.FirstErrLine(), "stload: error: model.safetensors.index.json: ")) << r;
  EXPECT_FALSE(fs::exists(dir.File("created")));
  // config.json is refused the same way, before any shard is written.
  fs::create_directory(dir.File("config"));
  fs::create_symlink("../outside", dir.File("config") + "/config.json");
  r = RunStload(
      {"make-checkpoint", dir.File("config"), "--total", "4KiB", "--shards", "1", "--force"});
  EXPECT_EQ(r.exit_code, kExitBadCheckpoint) << r;
  EXPECT_TRUE(StartsWith(r.FirstErrLine(), "stload: error: config.json: ")) << r;
  EXPECT_TRUE(ReadFile(dir.File("outside")) == "precious") << "the file outside DIR was written";
  EXPECT_EQ(ListDir(dir.File("config")), std::set<std::string>{"config.json"});
  // DIR itself a symbolic link.
  fs::create_directory(dir.File("elsewhere"));
  fs::create_directory_symlink(dir.File("elsewhere"), dir.File("link"));
  r = RunStload(
      {"make-checkpoint", dir.File("link"), "--total", "4KiB", "--shards", "1", "--force"});
  EXPECT_EQ(r.exit_code, kExitBadCheckpoint) << r;
  EXPECT_TRUE(StartsWith(r.FirstErrLine(), "stload: error: link: ")) << r;
  EXPECT_TRUE(fs::is_empty(dir.File("elsewhere")));
  // ... also spelled with a trailing slash (as a shell completes it), which O_NOFOLLOW alone
  // would follow.
  r = RunStload(
      {"make-checkpoint", dir.File("link") + "//", "--total", "4KiB", "--shards", "1", "--force"});
  EXPECT_EQ(r.exit_code, kExitBadCheckpoint) << r;
  EXPECT_TRUE(StartsWith(r.FirstErrLine(), "stload: error: link: ")) << r;
  EXPECT_TRUE(fs::is_empty(dir.File("elsewhere")));
  // A hard link to a file outside: replaced by a new file, the outside file untouched.
  fs::create_directory(dir.File("hardlinked"));
  fs::create_hard_link(dir.File("outside"), dir.File("hardlinked") + "/model.safetensors");
  r = RunStload({"make-checkpoint", dir.File("hardlinked"), "--preset", "single-file", "--total",
                 "4KiB", "--force"});
  EXPECT_EQ(r.exit_code, kExitOk) << r;
  EXPECT_TRUE(ReadFile(dir.File("outside")) == "precious") << "the file outside DIR was written";
  EXPECT_EQ(fs::hard_link_count(dir.File("outside")), 1u);
  EXPECT_EQ(ListDir(dir.File("hardlinked")),
            (std::set<std::string>{"config.json", "model.safetensors"}))
      << "no temporary file left";
  EXPECT_FALSE(ReadSafetensors(dir.File("hardlinked") + "/model.safetensors").tensors.empty());
}

// Item 15. Errors name a file: an empty path is shown as '', the loader's errors that know no
// file name the checkpoint, and so does the CLI's own "cannot allocate the destination memory".
TEST(CliIssue16, ErrorsNameTheFile) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"hash", ""},
                                             {"inspect", ""},
                                             {"inspect", "", "--json"},
                                             {"load", ""},
                                             {"bench", "", "--repeat", "1"}}) {
    SCOPED_TRACE(args[0]);
    const RunResult r = RunStload(args);
    EXPECT_EQ(r.exit_code, kExitBadCheckpoint) << r;
    EXPECT_TRUE(StartsWith(r.FirstErrLine(), "stload: error: '': ")) << r;
  }
  // One 1 GiB tensor in a sparse file, under a 512 MiB address-space limit: the destination
  // cannot be had.
  TempDir dir;
  const uint64_t size = 1ull << 30;
  const std::string header =
      R"({"big":{"dtype":"U8","shape":[1073741824],"data_offsets":[0,1073741824]}})";
  WriteFile(dir.File("big.safetensors"), MakeFileBytes(header, 0));
  fs::resize_file(dir.File("big.safetensors"), 8 + header.size() + size);
  if (test::kUnderAddressSanitizer) {
    GTEST_SKIP() << "AddressSanitizer's shadow memory does not fit in a 512 MiB RLIMIT_AS";
  }
  SpawnOptions limited;
  limited.address_space = 512ull << 20;
  for (const char* consumer : {"prealloc", "stream"}) {
    SCOPED_TRACE(consumer);
    const RunResult r = RunStloadWith(
        {"load", dir.File("big.safetensors"), "--consumer", consumer, "--no-progress"}, limited);
    EXPECT_EQ(r.exit_code, kExitBadCheckpoint) << r;
    EXPECT_TRUE(StartsWith(r.FirstErrLine(), "stload: error: big.safetensors: ")) << r;
  }
}

// Item 15. An empty value of a size, number, order or file option is a usage error, never
// "unset" (for --consumer keep, an unset --memory-limit means unlimited).
TEST(CliIssue16, EmptyOptionValuesAreUsageErrors) {
  TempDir dir;
  WriteLlama(dir.File("ckpt"), 1);
  const std::string ckpt = dir.File("ckpt");
  ExpectUsageError({"hash", ckpt, "--memory-limit", ""}, {"--memory-limit"});
  ExpectUsageError({"load", ckpt, "--consumer", "keep", "--memory-limit", ""}, {"--memory-limit"});
  ExpectUsageError({"hash", ckpt, "--order", ""}, {"--order"});
  ExpectUsageError({"make-checkpoint", dir.File("new"), "--total", ""}, {"--total"});
  ExpectUsageError({"make-checkpoint", dir.File("new"), "--seed", ""}, {"--seed"});
  ExpectUsageError({"make-checkpoint", dir.File("new"), "--shards", ""}, {"--shards"});
  EXPECT_FALSE(fs::exists(dir.File("new")));
  ExpectUsageError({"bench", ckpt, "--json", ""}, {"--json"});
  ExpectUsageError({"bench", ckpt, "--chart", ""}, {"--chart"});
  ExpectUsageError({"bench", ckpt, "--repeat", ""}, {"--repeat"});
}

}  // namespace
}  // namespace stload
