// Fuzz target: fuzz_load's inputs (the same format: see load_input.h), as a checkpoint held in
// memory (io::MemoryStorage, opened with CheckpointAccess::Open), so no file and no system call
// is involved: it runs much faster than fuzz_load and tests the parsing, the checkpoint's checks
// and the read operations over a source without a descriptor (Source::ReadAt). fuzz_load keeps
// the real system calls.
//
// Oracles: Open succeeds exactly when format::ParseHeader accepts the bytes, with the same
// tensors; every tensor's bytes, read whole with ReadTensorBytes and in chunks through the
// syscall ReadContext (a batch of buffered ReadOps), equal the input's bytes at its offset; a
// read past the end is kCorrupt naming the file, with the failing op's index.
//
// When the load engine reads sources without a descriptor, the Loader and LoadInto runs of
// fuzz_load belong here too.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "checkpoint/checkpoint_access.h"
#include "format/safetensors_header.h"
#include "io/memory_source.h"
#include "io/read_op.h"
#include "load_input.h"
#include "reference.h"
#include "stload/checkpoint.h"

namespace {

using stload::Checkpoint;
using stload::ErrorCode;
using stload::Result;
using stload::TensorInfo;
using stload::fuzz::Choices;
using stload::fuzz::MakeFile;

constexpr const char* kName = "model.safetensors";

struct Counts {
  size_t inputs = 0;
  size_t loaded = 0;
  size_t tensors = 0;
  ~Counts() {
    std::fprintf(stderr,
                 "fuzz_load_memory: %zu inputs, %zu valid checkpoints loaded (%zu tensors)\n",
                 inputs, loaded, tensors);
  }
};

void CheckBytes(const std::byte* got, uint64_t n, const uint8_t* want, const std::string& what) {
  if (n == 0) return;
  FUZZ_CHECK(std::memcmp(got, want, n) == 0, what + ": bytes differ from the file");
}

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
    CheckBytes(out.data() + t.file_offset, t.size_bytes(), file + t.file_offset,
               "chunked read of " + t.name);
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
  static Counts counts;
  ++counts.inputs;
  const std::vector<uint8_t> bytes = MakeFile(input, input_size);
  const uint8_t* data = bytes.data();
  const size_t size = bytes.size();
  stload::io::MemoryStorage storage;
  storage.Add(kName, std::vector<std::byte>(reinterpret_cast<const std::byte*>(data),
                                            reinterpret_cast<const std::byte*>(data) + size));
  Result<Checkpoint> ckpt = stload::CheckpointAccess::Open(storage, "memory");
  Result<stload::format::Header> header = stload::format::ParseHeader(
      std::span(reinterpret_cast<const std::byte*>(data), size), size);
  if (!ckpt.ok()) {
    FUZZ_CHECK(!header.ok(), "Open fails on a file ParseHeader accepts: " +
                                 ckpt.status().ToString());
    FUZZ_CHECK(ckpt.status().code() == ErrorCode::kCorrupt, ckpt.status().ToString());
    FUZZ_CHECK(ckpt.status().context().path == kName, "error path: " + ckpt.status().ToString());
    return 0;
  }
  FUZZ_CHECK(header.ok(), "Open accepts a file ParseHeader rejects: " + header.status().ToString());
  std::span<const TensorInfo> tensors = ckpt->tensors();
  FUZZ_CHECK(tensors.size() == header->tensors.size(), "tensor count");
  for (size_t i = 0; i < tensors.size(); ++i) {
    FUZZ_CHECK(tensors[i].name == header->tensors[i].name &&
                   tensors[i].file_offset == header->tensors[i].file_offset &&
                   tensors[i].size_bytes() == header->tensors[i].size_bytes() &&
                   tensors[i].shard == 0,
               "tensor " + std::to_string(i) + " differs from the header");
  }
  FUZZ_CHECK(ckpt->shards().size() == 1 && ckpt->shards()[0].size_bytes == size, "shard");
  ++counts.loaded;
  counts.tensors += tensors.size();

  for (uint32_t i = 0; i < tensors.size(); ++i) {
    std::vector<std::byte> got(tensors[i].size_bytes());
    stload::Status status = ckpt->ReadTensorBytes(i, 0, got);
    FUZZ_CHECK(status.ok(), "ReadTensorBytes: " + status.ToString());
    CheckBytes(got.data(), got.size(), data + tensors[i].file_offset, "ReadTensorBytes");
  }
  Choices choices(input, input_size);
  static constexpr uint64_t kChunks[] = {1, 7, 4096, 1 << 20};
  static constexpr size_t kBatches[] = {1, 3, 64};
  ReadInChunks(*ckpt, kChunks[choices.Pick(4)], kBatches[choices.Pick(3)], data);
  return 0;
}
