// What happens when a file shrinks *after* its weights were delivered (SECURITY.md, "mmap and
// files that change"). Before delivery, every path reports it (fault_injection_test.cc). After:
//   - pread, O_DIRECT, LoadInto: the bytes were copied into memory stload or the caller owns, so
//     they stay readable and right;
//   - mmap: a Weight points into the file's mapping; the kernel unmaps the pages past the new end,
//     and reading them raises SIGBUS. No reader can prevent it (Linux lets a reader neither forbid
//     truncation nor survive the access without a process-wide signal handler, which a library
//     must not install), so stload documents it, and this test keeps the documentation honest.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "stload/checkpoint.h"
#include "stload/loader.h"
#include "support/load_runner.h"
#include "support/read_paths.h"
#include "support/test_files.h"

namespace stload {
namespace {

using test::Path;

constexpr uint64_t kTensorBytes = 64 * 4096;

// Loads the one tensor of `file` through `path`, truncates the file to its header, then sums the
// weight's bytes. Returns the sum (the weight's bytes stayed readable).
uint64_t LoadTruncateAndRead(const std::string& file, Path path) {
  const Checkpoint ckpt = test::OpenOrThrow(file);
  Result<Loader> loader = Loader::Open(ckpt, test::MakeConfig(path, 1, LoadOrder::kFile, 1 << 20));
  if (!loader.ok()) throw std::runtime_error(loader.status().ToString());
  Result<std::optional<Weight>> w = loader->Next();
  if (!w.ok() || !w->has_value()) throw std::runtime_error("no weight");
  if (::truncate(file.c_str(), static_cast<off_t>(ckpt.shards()[0].data_start)) != 0) {
    throw std::runtime_error("truncate");
  }
  uint64_t sum = 0;
  for (std::byte b : (*w)->bytes()) sum += static_cast<uint8_t>(b);
  return sum;
}

TEST(MmapTruncation, CopiedWeightsSurviveTheFileShrinking) {
  for (Path path : {Path::kPread, Path::kDirect}) {
    SCOPED_TRACE(test::PathName(path));
    test::TempDir dir;
    const std::string file = dir.File("model.safetensors");
    test::WriteSafetensors(file, {{"w", DType::kU8, {kTensorBytes}}}, 1);
    const test::TensorBytes reference = test::ReadReference(test::OpenOrThrow(file));
    uint64_t expected = 0;
    for (std::byte b : reference.at("w")) expected += static_cast<uint8_t>(b);
    EXPECT_EQ(LoadTruncateAndRead(file, path), expected);
  }
}

// The documented caveat: run in a child process, which dies of SIGBUS. (AddressSanitizer catches
// SIGBUS itself and then exits with an error or aborts, depending on ASAN_OPTIONS.)
TEST(MmapTruncation, MappedWeightOfAShrunkFileRaisesSigbusOnAccess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  test::WriteSafetensors(file, {{"w", DType::kU8, {kTensorBytes}}}, 1);
  EXPECT_EXIT(
      {
        const uint64_t sum = LoadTruncateAndRead(file, Path::kMmap);
        std::fprintf(stderr, "read %llu without a fault\n", static_cast<unsigned long long>(sum));
        std::_Exit(0);
      },
      [](int status) {
        return (WIFSIGNALED(status) &&
                (WTERMSIG(status) == SIGBUS || WTERMSIG(status) == SIGABRT)) ||
               (WIFEXITED(status) && WEXITSTATUS(status) != 0);
      },
      "");
}

}  // namespace
}  // namespace stload
