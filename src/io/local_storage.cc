#include "io/local_storage.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>

#include "io/local_file_source.h"

namespace stload::io {

namespace {

namespace fs = std::filesystem;

// A directory entry that exists (lstat) but whose file cannot be reached: a symbolic link to
// nothing.
bool IsDanglingLink(const std::string& path) {
  struct stat lst {};
  struct stat st {};
  return ::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode) && ::stat(path.c_str(), &st) != 0;
}

}  // namespace

std::string LocalStorage::PathOf(const std::string& name) const {
  if (root_.empty()) return name;
  return root_.back() == '/' ? std::string(root_).append(name)
                             : std::string(root_).append("/").append(name);
}

Result<SourcePtr> LocalStorage::Open(const std::string& name) const {
  return LocalFileSource::Open(PathOf(name));
}

Result<std::vector<std::string>> LocalStorage::List(std::string_view suffix) const {
  const std::string dir = root_.empty() ? "." : root_;
  std::error_code ec;
  std::vector<std::string> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) {
      // The entry is there (it was listed) but leads nowhere: a dangling or looping symbolic
      // link. Skipping it would load a different set of files than the directory names.
      const int err = errno;
      Status status = IsDanglingLink(p.string())
                          ? NotFoundError("is a symbolic link to a file that does not exist")
                          : IoError(err, "stat");
      return std::move(status.WithErrno(err)).WithPath(p.string());
    }
    if (S_ISREG(st.st_mode)) files.push_back(name);
  }
  if (ec) return IoError(ec.value(), "list directory").WithPath(dir);
  std::sort(files.begin(), files.end());
  return files;
}

Result<bool> LocalStorage::Exists(const std::string& name) const {
  const std::string path = PathOf(name);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  return IoError(errno, "lstat").WithPath(path);
}

}  // namespace stload::io
