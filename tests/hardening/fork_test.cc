// fork() with a started Loader (issue 16, items 1 and 2): a child that inherited a Loader whose
// reader threads exist only in the parent gets a clear error from Next(), and destroying the
// Loader or the Weights it handed out neither crashes nor hangs there.
//
// Each child runs under alarm(), so a hang kills it with SIGALRM and the parent's check of the
// exit status fails instead of the suite stalling.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "stload/checkpoint.h"
#include "stload/load_config.h"
#include "stload/loader.h"
#include "support/read_paths.h"
#include "support/test_files.h"
#include "support/watchdog.h"

namespace stload {
namespace {

using test::Path;

constexpr int kTensors = 16;
constexpr uint64_t kTensorBytes = 256 * 1024;
constexpr unsigned kChildAlarmSeconds = 20;

// kTensors U8 tensors of kTensorBytes each, back to back.
std::string ManyTensorsFile(const test::TempDir& dir) {
  std::string json = "{";
  for (int i = 0; i < kTensors; ++i) {
    if (i > 0) json += ",";
    json += "\"t" + std::to_string(i) + "\":{\"dtype\":\"U8\",\"shape\":[" +
            std::to_string(kTensorBytes) + "],\"data_offsets\":[" +
            std::to_string(i * kTensorBytes) + "," + std::to_string((i + 1) * kTensorBytes) + "]}";
  }
  json += "}";
  const std::string path = dir.File("model.safetensors");
  test::WriteFile(path, test::MakeFileBytes(json, kTensors * kTensorBytes));
  return path;
}

// What the child does with the inherited Loader.
enum class ChildDoes { kNext, kDestroy, kNextThenDestroy, kDropWeightsThenDestroy };

// Runs `body` in a forked child (exit status 0 is success) and returns a description of how the
// child ended: "" for exit 0.
template <typename Body>
std::string RunInChild(Body body) {
  const pid_t pid = ::fork();
  if (pid < 0) return std::string("fork: ") + std::strerror(errno);
  if (pid == 0) {
    ::alarm(kChildAlarmSeconds);
    ::_exit(body());
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return std::string("waitpid: ") + std::strerror(errno);
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status) == 0 ? "" : "child exited with " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return "child killed by signal " + std::to_string(WTERMSIG(status)) +
           (WTERMSIG(status) == SIGALRM ? " (SIGALRM: it hung)" : "");
  }
  return "child ended oddly";
}

class ForkedLoader : public testing::TestWithParam<std::tuple<Path, ChildDoes>> {};

TEST_P(ForkedLoader, ChildGetsAClearErrorAndEndsCleanly) {
  const auto [path, does] = GetParam();
  test::Watchdog watchdog("ForkedLoader", std::chrono::seconds(2 * kChildAlarmSeconds));
  test::TempDir dir;
  const std::string file = ManyTensorsFile(dir);
  Result<Checkpoint> checkpoint = Checkpoint::Open(file);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  // A memory limit of 1 byte keeps the readers waiting on the loader's locks and condition
  // variables, the state a child must not touch.
  LoadConfig config = test::MakeConfig(path, 4, LoadOrder::kFile, 64 * 1024);
  config.memory_limit = 1;
  Result<Loader> loader = Loader::Open(*checkpoint, config);
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  SKIP_IF_DIRECT_REFUSED(path, loader->stats());
  Result<std::optional<Weight>> first = loader->Next();
  ASSERT_TRUE(first.ok() && first->has_value()) << first.status().ToString();
  std::optional<Weight> held = std::move(*first);

  std::string ended = RunInChild([&, does = does]() -> int {
    // The weight handed out before the fork stays readable.
    const std::span<const std::byte> bytes = held->bytes();
    if (bytes.size() != kTensorBytes) return 10;
    if (bytes[1] != static_cast<std::byte>((1 * 31 + 7) & 0xff)) return 11;
    if (does == ChildDoes::kNext || does == ChildDoes::kNextThenDestroy) {
      Result<std::optional<Weight>> next = loader->Next();
      if (next.ok()) return 12;
      if (next.status().code() != ErrorCode::kInvalidArgument) return 13;
      if (next.status().ToString().find("forked child") == std::string::npos) return 14;
      if (next.status().file_name() != "model.safetensors") return 15;
      loader->Cancel();  // does nothing in the child, and must not hang
      (void)loader->stats();
    }
    if (does == ChildDoes::kDropWeightsThenDestroy) held.reset();
    if (does != ChildDoes::kNext) {
      Loader gone = std::move(*loader);  // ~Loader in the child, at the end of this scope
      (void)gone;
    }
    held.reset();
    return 0;
  });
  EXPECT_EQ(ended, "");

  // The parent's load is unharmed: every tensor still arrives.
  held.reset();
  int count = 1;
  while (true) {
    Result<std::optional<Weight>> next = loader->Next();
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    if (!next->has_value()) break;
    ++count;
  }
  EXPECT_EQ(count, kTensors);
}

std::string ChildDoesName(ChildDoes does) {
  switch (does) {
    case ChildDoes::kNext: return "Next";
    case ChildDoes::kDestroy: return "Destroy";
    case ChildDoes::kNextThenDestroy: return "NextThenDestroy";
    case ChildDoes::kDropWeightsThenDestroy: return "DropWeightsThenDestroy";
  }
  return "?";
}

INSTANTIATE_TEST_SUITE_P(
    AllPaths, ForkedLoader,
    testing::Combine(testing::ValuesIn(test::kAllPaths),
                     testing::Values(ChildDoes::kNext, ChildDoes::kDestroy,
                                     ChildDoes::kNextThenDestroy,
                                     ChildDoes::kDropWeightsThenDestroy)),
    [](const auto& info) {
      return std::string(test::PathName(std::get<0>(info.param))) +
             ChildDoesName(std::get<1>(info.param));
    });

}  // namespace
}  // namespace stload
