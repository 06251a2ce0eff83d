#include "checkpoint_list.h"

#include <algorithm>
#include <filesystem>
#include <optional>

namespace fs = std::filesystem;

namespace stload::python {
namespace {

std::optional<fs::path> Canonical(const fs::path& path) {
  std::error_code ec;
  fs::path canonical = fs::canonical(path, ec);
  if (ec) return std::nullopt;
  return canonical;
}

// The directory's checkpoint if it is exactly `files`, else nullopt (including when the
// directory does not open: the files are then opened, and any error reported, one by one).
std::optional<Checkpoint> OpenAsDirectory(const std::vector<std::string>& files,
                                          bool keep_list_order) {
  const fs::path directory = fs::path(files.front()).lexically_normal().parent_path();
  std::vector<fs::path> wanted;
  for (const std::string& file : files) {
    const fs::path path(file);
    if (path.lexically_normal().parent_path() != directory) return std::nullopt;
    std::optional<fs::path> canonical = Canonical(path);
    if (!canonical) return std::nullopt;
    wanted.push_back(*canonical);
  }
  Result<Checkpoint> checkpoint = Checkpoint::Open(directory.empty() ? "." : directory.string());
  if (!checkpoint.ok() || checkpoint->shards().size() != wanted.size()) return std::nullopt;
  std::vector<fs::path> found;
  for (const ShardInfo& shard : checkpoint->shards()) {
    std::optional<fs::path> canonical = Canonical(shard.path);
    if (!canonical) return std::nullopt;
    found.push_back(*canonical);
  }
  if (!keep_list_order) {
    std::sort(wanted.begin(), wanted.end());
    std::sort(found.begin(), found.end());
  }
  if (wanted != found) return std::nullopt;
  return std::move(checkpoint).value();
}

}  // namespace

Result<std::vector<Checkpoint>> OpenCheckpointList(const std::vector<std::string>& files,
                                                   bool keep_list_order) {
  std::vector<Checkpoint> checkpoints;
  if (files.size() > 1) {
    if (std::optional<Checkpoint> all = OpenAsDirectory(files, keep_list_order)) {
      checkpoints.push_back(std::move(*all));
      return checkpoints;
    }
  }
  for (const std::string& file : files) {
    STLOAD_ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::Open(file));
    checkpoints.push_back(std::move(checkpoint));
  }
  return checkpoints;
}

}  // namespace stload::python
