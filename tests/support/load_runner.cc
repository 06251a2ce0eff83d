#include "support/load_runner.h"

#include <stdexcept>

#include "support/test_files.h"

namespace stload::test {
namespace {

uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

void WriteSafetensors(const std::string& path, const std::vector<synth::TensorSpec>& tensors,
                      uint64_t salt) {
  uint64_t total = 0;
  for (const synth::TensorSpec& t : tensors) total += synth::SpecBytes(t);
  std::string bytes = synth::SerializeHeader(tensors);
  bytes.reserve(bytes.size() + total);
  for (uint64_t i = 0; i < total; i += 8) {
    const uint64_t word = Mix((salt << 40) | (i / 8));
    bytes.append(reinterpret_cast<const char*>(&word), std::min<uint64_t>(8, total - i));
  }
  WriteFile(path, bytes);
}

void WriteIndex(const std::string& dir,
                const std::vector<std::pair<std::string, std::string>>& weight_map) {
  std::string text = "{\"metadata\": {}, \"weight_map\": {";
  for (size_t i = 0; i < weight_map.size(); ++i) {
    if (i) text += ", ";
    text += "\"" + weight_map[i].first + "\": \"" + weight_map[i].second + "\"";
  }
  text += "}}\n";
  WriteFile(dir + "/model.safetensors.index.json", text);
}

Checkpoint OpenOrThrow(const std::string& path) {
  Result<Checkpoint> c = Checkpoint::Open(path);
  if (!c.ok()) throw std::runtime_error("Checkpoint::Open: " + c.status().ToString());
  return std::move(c).value();
}

TensorBytes ReadReference(const Checkpoint& checkpoint) {
  TensorBytes out;
  for (uint32_t i = 0; i < checkpoint.tensors().size(); ++i) {
    const TensorInfo& t = checkpoint.tensors()[i];
    std::vector<std::byte>& bytes = out[t.name];
    bytes.resize(t.size_bytes());
    Status read = checkpoint.ReadTensorBytes(i, 0, bytes);
    if (!read.ok()) throw std::runtime_error(read.ToString());
  }
  return out;
}

const char* ApiName(Api api) { return api == Api::kLoader ? "Loader" : "LoadInto"; }

LoadOutcome RunLoad(const Checkpoint& checkpoint, Api api, const LoadConfig& config) {
  LoadOutcome out;
  if (api == Api::kLoadInto) {
    std::vector<Destination> destinations;
    for (uint32_t i = 0; i < checkpoint.tensors().size(); ++i) {
      const TensorInfo& t = checkpoint.tensors()[i];
      std::vector<std::byte>& bytes = out.bytes[t.name];
      bytes.assign(t.size_bytes(), std::byte{0xA5});
      destinations.push_back({i, bytes});
    }
    LoadReport report = LoadInto(checkpoint, destinations, {.config = config});
    out.status = std::move(report.status);
    out.stats = std::move(report.stats);
    return out;
  }
  Result<Loader> loader = Loader::Open(checkpoint, config);
  if (!loader.ok()) {
    out.status = loader.status();
    return out;
  }
  while (true) {
    Result<std::optional<Weight>> next = loader->Next();
    if (!next.ok()) {
      out.status = next.status();
      break;
    }
    if (!next->has_value()) break;
    std::span<const std::byte> bytes = (*next)->bytes();
    out.bytes[(*next)->name()].assign(bytes.begin(), bytes.end());
  }
  out.stats = loader->stats();
  return out;
}

}  // namespace stload::test
