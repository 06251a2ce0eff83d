// Fuzz target: fuzz_load's inputs (the same format: see load_input.h), as a checkpoint held in
// memory (io::MemoryStorage, opened with CheckpointAccess::Open), so no file is involved: it
// tests the parsing, the checkpoint's checks and the read operations over a source without a
// descriptor (Source::ReadAt), and loads it like fuzz_load does. fuzz_load keeps the real files.
//
// Oracles: Open succeeds exactly when format::ParseHeader accepts the bytes, with the same
// tensors; every tensor's bytes, read whole with ReadTensorBytes and in chunks through the
// syscall ReadContext (a batch of buffered ReadOps), equal the input's bytes at its offset; a
// read past the end is kCorrupt naming the file, with the failing op's index. Then the Loader
// and LoadInto runs of fuzz_load (load_checks.h), over the same configurations: asking for mmap
// or O_DIRECT reads with buffered ReadAt instead, with a warning naming the file.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "checkpoint/checkpoint_access.h"
#include "io/memory_source.h"
#include "io/read_op.h"
#include "load_checks.h"
#include "load_input.h"
#include "reference.h"
#include "stload/checkpoint.h"

namespace {

using stload::Checkpoint;
using stload::ErrorCode;
using stload::Result;
using stload::TensorInfo;
using stload::fuzz::CheckBytes;
using stload::fuzz::Choices;
using stload::fuzz::MakeFile;

constexpr const char* kName = "model.safetensors";

// Every tensor read in chunks of `chunk` bytes, `batch` ops per ReadAll.
void ReadInChunks(const Checkpoint& ckpt, uint64_t chunk, size_t batch, const uint8_t* file) {
  const stload::io::Source& source = stload::CheckpointAccess::ShardSource(ckpt, 0);
  stload::io::PreparedFile prepared;
  prepared.source = &source;
  std::unique_ptr<stload::io::ReadContext> context = stload::io::MakeSyscallContext();
  std::vector<std::byte> out(ckpt.shards()[0].size_bytes);
  std::vector<stload::io::ReadOp> ops;
  auto flush = [&] {
    size_t failed = 0;
    stload::Status status = context->ReadAll(ops, &failed);
    FUZZ_CHECK(status.ok(), "ReadAll: " + status.ToString());
    ops.clear();
  };
  for (const TensorInfo& t : ckpt.tensors()) {
    for (uint64_t at = 0; at < t.size_bytes(); at += chunk) {
      const uint64_t n = std::min(chunk, t.size_bytes() - at);
      ops.push_back({.file = &prepared, .method = stload::io::ReadMethod::kBuffered,
                     .offset = t.file_offset + at, .length = n, .required = n,
                     .dst = out.data() + t.file_offset + at});
      if (ops.size() == batch) flush();
    }
  }
  flush();
  for (const TensorInfo& t : ckpt.tensors()) {
    CheckBytes(std::span<const std::byte>(out.data() + t.file_offset, t.size_bytes()), t, file,
               "chunked read");
  }
  // Past the end: the second op fails.
  const uint64_t size = source.size_bytes();
  std::byte one[2];
  ops.push_back({.file = &prepared, .offset = 0, .length = 0, .required = 0, .dst = one});
  ops.push_back({.file = &prepared, .offset = size, .length = 1, .required = 1, .dst = one});
  size_t failed = 99;
  stload::Status status = context->ReadAll(ops, &failed);
  FUZZ_CHECK(status.code() == ErrorCode::kCorrupt && failed == 1 &&
                 status.context().path == kName && status.context().offset == size,
             "read past the end: " + status.ToString());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t input_size) {
  static stload::fuzz::LoadCounts counts("fuzz_load_memory");
  ++counts.inputs;
  const std::vector<uint8_t> bytes = MakeFile(input, input_size);
  const uint8_t* data = bytes.data();
  const size_t size = bytes.size();
  stload::io::MemoryStorage storage;
  storage.Add(kName, std::vector<std::byte>(reinterpret_cast<const std::byte*>(data),
                                            reinterpret_cast<const std::byte*>(data) + size));
  Result<Checkpoint> ckpt = stload::CheckpointAccess::Open(storage, "memory");
  if (!stload::fuzz::CheckOpen(ckpt, data, size, kName)) return 0;
  std::span<const TensorInfo> tensors = ckpt->tensors();
  ++counts.loaded;
  counts.tensors += tensors.size();

  for (uint32_t i = 0; i < tensors.size(); ++i) {
    std::vector<std::byte> got(tensors[i].size_bytes());
    stload::Status status = ckpt->ReadTensorBytes(i, 0, got);
    FUZZ_CHECK(status.ok(), "ReadTensorBytes: " + status.ToString());
    CheckBytes(got, tensors[i], data, "ReadTensorBytes");
  }
  Choices choices(input, input_size);
  static constexpr uint64_t kChunks[] = {1, 7, 4096, 1 << 20};
  static constexpr size_t kBatches[] = {1, 3, 64};
  const uint64_t chunk = kChunks[choices.Pick(4)];
  const size_t batch = kBatches[choices.Pick(3)];
  ReadInChunks(*ckpt, chunk, batch, data);
  static const stload::fuzz::Backing backing{.in_memory = true, .file_name = kName};
  stload::fuzz::RunLoads(*ckpt, choices, data, backing);
  return 0;
}
