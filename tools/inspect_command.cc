// `stload inspect PATH [--json]`: what a checkpoint holds, validated.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "commands.h"
#include "stload/checkpoint.h"

namespace stload::cli {
namespace {

struct InspectArgs {
  std::string path;
  bool json = false;
  RankFlags ranks;
};

// A tensor as the rank sees it: its part's shape and size (whole without rank flags).
struct Shown {
  const TensorInfo* info;
  std::vector<uint64_t> shape;
  uint64_t bytes;
};

std::vector<Shown> ShownTensors(const Checkpoint& ckpt, const std::vector<TensorPart>& parts) {
  std::vector<Shown> out;
  for (const TensorPart& p : parts) {
    if (p.action != TensorPart::Action::kSkip) out.push_back({&ckpt.tensors()[p.tensor], p.shape, p.bytes});
  }
  return out;
}


// `text` is valid UTF-8 JSON, so these code points occur only inside strings, where \uHHHH means
// the same.
std::string EscapeJsonForTerminal(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  char code[8];
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const unsigned char c1 = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
    const unsigned char c2 = i + 2 < text.size() ? static_cast<unsigned char>(text[i + 2]) : 0;
    unsigned code_point = 0;
    size_t length = 0;
    if (c == 0x7f) {
      code_point = 0x7f, length = 1;
    } else if (c == 0xc2 && c1 >= 0x80 && c1 <= 0x9f) {
      code_point = c1, length = 2;
    } else if (c == 0xe2 && ((c1 == 0x80 && c2 >= 0xaa && c2 <= 0xae) ||
                             (c1 == 0x81 && c2 >= 0xa6 && c2 <= 0xa9))) {
      code_point = 0x2000u | ((c1 & 0x3fu) << 6) | (c2 & 0x3fu), length = 3;
    }
    if (length == 0) {
      out += static_cast<char>(c);
      continue;
    }
    std::snprintf(code, sizeof code, "\\u%04x", code_point);
    out += code;
    i += length - 1;
  }
  return out;
}

void PrintJson(const Checkpoint& ckpt, const std::vector<Shown>& shown, bool ranked) {
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const Shown& s : shown) {
    const TensorInfo& t = *s.info;
    nlohmann::ordered_json j = {{"name", t.name},
                                {"dtype", std::string(DTypeName(t.dtype))},
                                {"shape", s.shape},
                                {"file", ckpt.shards()[t.shard].file_name},
                                {"data_offsets", {t.begin, t.end}}};
    if (ranked) {
      j["full_shape"] = t.shape;
      j["part_bytes"] = s.bytes;
    }
    tensors.push_back(std::move(j));
  }
  nlohmann::ordered_json metadata = nlohmann::ordered_json::object();
  for (const auto& [key, value] : ckpt.metadata()) metadata[key] = value;
  nlohmann::ordered_json out = {{"tensors", std::move(tensors)},
                                {"metadata", std::move(metadata)},
                                {"total_bytes", ckpt.total_bytes()}};
  // Names come from untrusted files: invalid UTF-8 cannot occur (the parser rejects it), but
  // replace rather than throw if it ever did.
  // The dump escapes every control character below U+0020 (ESC as \u001b); DEL, the C1 controls
  // and the bidirectional overrides, which JSON allows raw, are escaped too, so that a name cannot
  // drive a terminal the output is shown on.
  Print(EscapeJsonForTerminal(
            out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace)) +
        "\n");
}

void PrintTable(const Checkpoint& ckpt, const std::vector<Shown>& shown, bool ranked) {
  struct Row {
    std::string name, dtype, shape, size, file;
  };
  std::vector<Row> rows;
  rows.push_back({"NAME", "DTYPE", "SHAPE", "SIZE", "FILE"});
  // Names come from the files: escaped, so that a name cannot move the cursor, clear the screen,
  // retitle the terminal or fake rows.
  uint64_t part_bytes = 0;
  for (const Shown& s : shown) {
    const TensorInfo& t = *s.info;
    rows.push_back({EscapeForTerminal(t.name), std::string(DTypeName(t.dtype)), ShapeText(s.shape),
                    FormatBytes(s.bytes), EscapeForTerminal(ckpt.shards()[t.shard].file_name)});
    part_bytes += s.bytes;
  }
  size_t w[4] = {0, 0, 0, 0};
  for (const Row& r : rows) {
    w[0] = std::max(w[0], r.name.size());
    w[1] = std::max(w[1], r.dtype.size());
    w[2] = std::max(w[2], r.shape.size());
    w[3] = std::max(w[3], r.size.size());
  }
  std::string out;
  for (const Row& r : rows) {
    out += r.name + std::string(w[0] - r.name.size() + 2, ' ');
    out += r.dtype + std::string(w[1] - r.dtype.size() + 2, ' ');
    out += r.shape + std::string(w[2] - r.shape.size() + 2, ' ');
    out += std::string(w[3] - r.size.size(), ' ') + r.size + "  ";
    out += r.file + "\n";
  }
  const size_t files = ckpt.shards().size();
  out += std::to_string(ckpt.tensors().size()) + " tensors, " + FormatBytes(ckpt.total_bytes()) +
         " (" + std::to_string(ckpt.total_bytes()) + " bytes) in " + std::to_string(files) +
         (files == 1 ? " file" : " files") + (ckpt.has_index() ? " (with index)" : "") + "\n";
  if (ranked) {
    out += "this rank: " + std::to_string(shown.size()) + " tensors (" +
           std::to_string(ckpt.tensors().size() - shown.size()) + " skipped), " +
           FormatBytes(part_bytes) + " (" + std::to_string(part_bytes) + " bytes)\n";
  }
  const Metadata metadata = ckpt.metadata();
  for (const auto& [key, value] : metadata) {
    out += "metadata: " + EscapeForTerminal(key) + " = " + EscapeForTerminal(value) + "\n";
  }
  Print(out);
}

}  // namespace

Runner AddInspectCommand(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand(
      "inspect", "Validate a checkpoint and list its tensors (name, dtype, shape, size, file)");
  cmd->add_option("PATH", args->path,
                  "A .safetensors file, a directory of shards, or model.safetensors.index.json")
      ->required();
  cmd->add_flag("--json", args->json,
                "Print one JSON object: tensors (name, dtype, shape, file, data_offsets), "
                "metadata, total_bytes (with rank flags: the part's shape, full_shape and "
                "part_bytes)");
  args->ranks.AddTo(*cmd);
  return [args] {
    Result<Checkpoint> ckpt = Checkpoint::Open(args->path);
    if (!ckpt.ok()) return ReportError(ckpt.status(), args->path);
    for (const std::string& w : ckpt->warnings()) Warn(w);
    LoadConfig config;
    args->ranks.ApplyTo(config);
    Result<std::vector<TensorPart>> parts = SelectPartsOrUsageError(*ckpt, config);
    if (!parts.ok()) return ReportError(parts.status(), args->path);
    const std::vector<Shown> shown = ShownTensors(*ckpt, *parts);
    if (args->json) {
      PrintJson(*ckpt, shown, !config.rules.empty());
    } else {
      PrintTable(*ckpt, shown, !config.rules.empty());
    }
    return static_cast<int>(kExitOk);
  };
}

}  // namespace stload::cli
