// Fuzz target: a whole safetensors file, given as bytes (as is, or built from a header's text and
// data: see MakeFile), written to a temporary file, opened as a checkpoint and loaded through the
// real read paths: the streaming Loader and LoadInto, over
// pread, mmap, O_DIRECT (which falls back to pread where the filesystem refuses it) and io_uring,
// with small chunks, 1 or 2 threads, every delivery order and tiny memory limits. Which
// configuration each input gets is derived from a hash of its bytes, so a crash reproduces.
//
// Oracles: Open succeeds exactly when format::ParseHeader accepts the bytes, with the same
// tensors. Every load succeeds, delivers every tensor exactly once, in the configured order, and
// each tensor's bytes equal the input's bytes at the tensor's file offset; weights that the
// consumer keeps still hold those bytes after the load has finished and the Loader is gone
// (load_checks.h, shared with fuzz_load_memory).
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "load_checks.h"
#include "load_input.h"
#include "reference.h"
#include "stload/checkpoint.h"

namespace {

using stload::Checkpoint;
using stload::Result;
using stload::fuzz::Choices;
using stload::fuzz::MakeFile;

// One file per process, rewritten for every input; removed at exit.
struct FuzzFile {
  std::string dir;
  std::string path;
  FuzzFile() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/stload-fuzz-load-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) stload::fuzz::Fail("mkdtemp");
    dir = pattern;
    path = dir + "/model.safetensors";
  }
  ~FuzzFile() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  void Write(const uint8_t* data, size_t size) const {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    f.close();
    if (!f) stload::fuzz::Fail("cannot write " + path);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t input_size) {
  // How many inputs got past Checkpoint::Open (printed at exit: the share that tests loading).
  static stload::fuzz::LoadCounts counts("fuzz_load");
  static FuzzFile file;
  const std::vector<uint8_t> bytes = MakeFile(input, input_size);
  const uint8_t* data = bytes.data();
  const size_t size = bytes.size();
  file.Write(data, size);
  ++counts.inputs;
  Result<Checkpoint> ckpt = Checkpoint::Open(file.path);
  if (!stload::fuzz::CheckOpen(ckpt, data, size, file.path)) return 0;
  ++counts.loaded;
  counts.tensors += ckpt->tensors().size();
  static const stload::fuzz::Backing backing{.in_memory = false, .file_name = "model.safetensors"};
  Choices choices(input, input_size);
  stload::fuzz::RunLoads(*ckpt, choices, data, backing);
  return 0;
}
