// Micro-benchmarks (Google Benchmark): header parsing, read planning, SHA-256.
//   build/bench/stload_micro_benchmarks [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <openssl/evp.h>

#include <filesystem>
#include <string>
#include <vector>

#include "format/safetensors_header.h"
#include "load/read_plan.h"
#include "stload/checkpoint.h"
#include "synth/synthetic_checkpoint.h"

namespace {

using stload::synth::TensorSpec;

// A header of `count` Llama-style tensors (names and shapes as in a real checkpoint) with the
// whole file's size, without materializing the data.
struct HeaderFixture {
  std::string bytes;
  uint64_t file_size = 0;
};

HeaderFixture MakeHeader(size_t count) {
  std::vector<TensorSpec> tensors;
  const char* kParts[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                          "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                          "mlp.down_proj",    "input_layernorm",  "post_attention_layernorm"};
  for (size_t i = 0; i < count; ++i) {
    tensors.push_back({"model.layers." + std::to_string(i / 9) + "." + kParts[i % 9] + ".weight",
                       stload::DType::kBF16,
                       {16, 16}});
  }
  HeaderFixture f;
  f.bytes = stload::synth::SerializeHeader(tensors);
  f.file_size = f.bytes.size() + count * 512;
  return f;
}

void BM_ParseHeader(benchmark::State& state) {
  const HeaderFixture f = MakeHeader(static_cast<size_t>(state.range(0)));
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(f.bytes.data()), f.bytes.size());
  for (auto _ : state) {
    auto header = stload::format::ParseHeader(bytes, f.file_size);
    if (!header.ok()) state.SkipWithError(header.status().ToString().c_str());
    benchmark::DoNotOptimize(header);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * f.bytes.size()));
  state.counters["header_MB"] = static_cast<double>(f.bytes.size()) / 1e6;
}
BENCHMARK(BM_ParseHeader)->Arg(1000)->Arg(100000)->Unit(benchmark::kMillisecond);

// Read planning of a DeepSeek-like checkpoint in 163 shards (the 671B model's shard count).
void BM_PlanReads(benchmark::State& state) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("stload-bench-plan-" + std::to_string(::getpid()));
  stload::synth::Spec spec{.preset = stload::synth::Preset::kDeepSeek,
                           .total_bytes = 64ull << 20,
                           .shards = 163,
                           .dtype = stload::DType::kBF16,
                           .seed = 1};
  auto written = stload::synth::WriteCheckpoint(dir.string(), spec);
  if (!written.ok()) {
    state.SkipWithError(written.status().ToString().c_str());
    return;
  }
  auto ckpt = stload::Checkpoint::Open(dir.string());
  if (!ckpt.ok()) {
    state.SkipWithError(ckpt.status().ToString().c_str());
    return;
  }
  const auto order = static_cast<stload::LoadOrder>(state.range(0));
  for (auto _ : state) {
    auto plan = stload::load::PlanReads(*ckpt, stload::load::WholeTensors(*ckpt, order),
                                        {.group_bytes = 16ull << 20, .chunk_bytes = 16ull << 20});
    benchmark::DoNotOptimize(plan);
  }
  state.counters["tensors"] = static_cast<double>(ckpt->tensors().size());
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_PlanReads)
    ->Arg(static_cast<int>(stload::LoadOrder::kNatural))
    ->Arg(static_cast<int>(stload::LoadOrder::kFile))
    ->Unit(benchmark::kMillisecond);

// Opening (reading and validating every header of) the same 163-shard checkpoint.
void BM_OpenCheckpoint(benchmark::State& state) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("stload-bench-open-" + std::to_string(::getpid()));
  stload::synth::Spec spec{.preset = stload::synth::Preset::kDeepSeek,
                           .total_bytes = 64ull << 20,
                           .shards = 163,
                           .dtype = stload::DType::kBF16,
                           .seed = 1};
  if (!stload::synth::WriteCheckpoint(dir.string(), spec).ok()) {
    state.SkipWithError("cannot write the checkpoint");
    return;
  }
  for (auto _ : state) {
    auto ckpt = stload::Checkpoint::Open(dir.string());
    if (!ckpt.ok()) state.SkipWithError(ckpt.status().ToString().c_str());
    benchmark::DoNotOptimize(ckpt);
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_OpenCheckpoint)->Unit(benchmark::kMillisecond);

void BM_Sha256(benchmark::State& state) {
  std::vector<unsigned char> data(static_cast<size_t>(state.range(0)), 0x5a);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  for (auto _ : state) {
    EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr);
    benchmark::DoNotOptimize(digest);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_Sha256)->Arg(64 << 20)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
