// A Storage over a local directory (or over paths as given).
#pragma once

#include <string>

#include "io/source.h"

namespace stload::io {

class LocalStorage final : public Storage {
 public:
  // Names are relative to `root`: Open("a.safetensors") opens root + "/a.safetensors". With an
  // empty root, names are paths as given (and List lists the current directory).
  explicit LocalStorage(std::string root = "") : root_(std::move(root)) {}

  const std::string& root() const { return root_; }
  // root joined with `name` (name alone when root is empty): the path a file is opened as, and
  // what its Source's name() is.
  std::string PathOf(const std::string& name) const;

  // io::LocalFileSource::Open(PathOf(name)).
  Result<SourcePtr> Open(const std::string& name) const override;
  // The regular files in root (following symbolic links) whose name ends in `suffix` and is
  // longer than it, sorted. An entry that leads nowhere (a dangling or looping link, e.g. a
  // Hugging Face cache snapshot missing a blob) is an error: kNotFound for a dangling link,
  // kIoError otherwise; failing to list root is kIoError naming it.
  Result<std::vector<std::string>> List(std::string_view suffix) const override;
  // lstat: a dangling link exists.
  Result<bool> Exists(const std::string& name) const override;

 private:
  const std::string root_;
};

}  // namespace stload::io
