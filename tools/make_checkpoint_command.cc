// `stload make-checkpoint DIR`: a synthetic checkpoint for demos, tests and benchmarks.
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli_common.h"
#include "commands.h"
#include "synth/synthetic_checkpoint.h"

namespace stload::cli {
namespace {

struct MakeArgs {
  std::string dir;
  std::string preset = "llama";
  std::optional<std::string> total;  // unset: the preset's default
  uint32_t shards = 4;
  std::string dtype = "BF16";
  uint64_t seed = 0;
  bool force = false;
};

int RunMake(const MakeArgs& args) {
  synth::Spec spec;
  std::optional<synth::Preset> preset = synth::ParsePreset(args.preset);
  if (!preset) throw UsageError{"--preset must be llama, single-file, many-small or deepseek"};
  spec.preset = *preset;
  // many-small's default is the 100,000 tiny tensors of a large MoE checkpoint's header.
  const std::string total_text =
      args.total ? *args.total : *preset == synth::Preset::kManySmall ? "51200000" : "256MiB";
  Result<uint64_t> total = ParseByteSize(total_text);
  if (!total.ok()) throw UsageError{"--total: " + total.status().reason()};
  if (*total < 1024 || *total > (1ull << 40)) throw UsageError{"--total must be 1KiB to 1TiB"};
  spec.total_bytes = *total;
  spec.shards = args.shards;
  std::optional<DType> dtype = ParseDType(args.dtype);
  if (!dtype) throw UsageError{"--dtype '" + args.dtype + "' is not a safetensors dtype"};
  spec.dtype = *dtype;
  spec.seed = args.seed;

  std::error_code ec;
  if (!args.force && std::filesystem::exists(args.dir, ec) &&
      !std::filesystem::is_empty(args.dir, ec)) {
    throw UsageError{args.dir + " exists and is not empty; pass --force to write into it"};
  }
  Result<synth::Summary> summary = synth::WriteCheckpoint(args.dir, spec);
  if (!summary.ok()) {
    // A spec that cannot be met names no file; a refused DIR or entry does.
    if (summary.status().code() == ErrorCode::kInvalidArgument &&
        summary.status().context().path.empty()) {
      throw UsageError{summary.status().reason()};
    }
    return ReportError(summary.status(), args.dir);
  }
  Print("wrote " + std::to_string(summary->files.size()) + " files, " +
        std::to_string(summary->tensors) + " tensors, " + FormatBytes(summary->bytes) + " (" +
        std::to_string(summary->bytes) + " bytes) to " + args.dir + "\n");
  return kExitOk;
}

}  // namespace

Runner AddMakeCheckpointCommand(CLI::App& app) {
  auto args = std::make_shared<MakeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "make-checkpoint",
      "Write a synthetic checkpoint (Llama-style names and shapes, random bytes, deterministic "
      "for a seed)");
  cmd->add_option("DIR", args->dir, "Directory to write (created if missing)")->required();
  cmd->add_option("--preset", args->preset,
                  "llama: K shards + config.json + index; single-file: one model.safetensors + "
                  "config.json; deepseek: DeepSeek-V3-like FP8 MoE with F32 block scales, K "
                  "shards + config.json + index; many-small: 512-byte tensors in K shards + "
                  "index, no config.json")
      ->capture_default_str();
  cmd->add_option("--total", args->total,
                  "Approximate total tensor bytes, e.g. 4GiB (default 256MiB; many-small: "
                  "100,000 tensors of 512 bytes)")
      ->type_name("SIZE");
  cmd->add_option("--shards", args->shards, "Number of shards (llama, deepseek, many-small)")
      ->check(CLI::Range(1, 100000))
      ->type_name("K")
      ->capture_default_str();
  cmd->add_option("--dtype", args->dtype,
                  "Element type of every tensor (deepseek: not used, its dtypes are fixed)")
      ->capture_default_str();
  // CLI11 would read "-1" into the unsigned seed as 2^64 - 1, and "" as 0; refuse both.
  const CLI::Validator unsigned_integer(
      [](std::string& text) -> std::string {
        return !text.empty() && text.find('-') == std::string::npos
                   ? ""
                   : "must be a non-negative integer";
      },
      "");
  cmd->add_option("--seed", args->seed, "Seed of the random bytes (a non-negative integer)")
      ->check(unsigned_integer)
      ->type_name("S")
      ->capture_default_str();
  cmd->add_flag("--force", args->force, "Write into DIR even if it is not empty");
  return [args] { return RunMake(*args); };
}

}  // namespace stload::cli
