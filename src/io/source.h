// Sources and storage: where a checkpoint's bytes come from.
//
// A Source is one checkpoint file as it was validated: it stays open (a local file keeps its
// descriptor), so every later read sees the same file even if its name is replaced meanwhile.
// A Storage opens and lists files by name; Checkpoint's discovery (directory listing, index
// resolution) goes through one, so a remote storage later plugs in without touching it.
// Modelled on leveldb's Env / RandomAccessFile. Not public API.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stload/result.h"

namespace stload::io {

// What a source can do: bits of Source::caps().
enum SourceCap : uint32_t {
  kCanDescriptor = 1u << 0,  // fd() is a readable descriptor: pread, io_uring, mmap work on it
  kCanDirect = 1u << 1,      // may be reopened with O_DIRECT (the file system may still refuse)
};

// One immutable file. Every method may be called from any thread at once.
class Source {
 public:
  virtual ~Source() = default;
  // The path (or, later, URL without credentials) the file was opened as.
  virtual const std::string& name() const = 0;
  // Size when opened: the size the header was validated against.
  virtual uint64_t size_bytes() const = 0;
  virtual uint32_t caps() const = 0;
  // Reads exactly dst.size() bytes at `offset` (buffered). The file ending first is kCorrupt
  // ("file ends before the data its header describes"). Errors carry the offset, not the name
  // (callers add the name, as for io::PreadFull).
  virtual Status ReadAt(uint64_t offset, std::span<std::byte> dst) const = 0;
  // The read-only descriptor when caps() has kCanDescriptor, else -1. Owned by the source.
  virtual int fd() const { return -1; }
  // Which file this is whatever names lead to it (st_dev, st_ino), for refusing the same file
  // twice; {0, 0} where unknown.
  struct Identity {
    dev_t device = 0;
    ino_t inode = 0;
    bool operator<(const Identity& o) const {
      return device != o.device ? device < o.device : inode < o.inode;
    }
  };
  virtual Identity identity() const { return {}; }
};

using SourcePtr = std::shared_ptr<const Source>;

// Opens and lists a checkpoint's files. Thread-safe.
class Storage {
 public:
  virtual ~Storage() = default;
  // The file called `name` (relative to the storage's root, or a path as given). Errors name it:
  // kNotFound, kInvalidArgument (not a regular file), kIoError.
  virtual Result<SourcePtr> Open(const std::string& name) const = 0;
  // Names of the regular files whose name ends in `suffix`, sorted. Entries that lead nowhere
  // (dangling links) are errors, never skipped.
  virtual Result<std::vector<std::string>> List(std::string_view suffix) const = 0;
  // Whether there is an entry called `name`, even one that leads nowhere (a dangling symbolic
  // link, which Open then refuses): how a checkpoint tells "no index" from "an index that cannot
  // be read". kIoError (naming it) when that cannot be told.
  virtual Result<bool> Exists(const std::string& name) const = 0;
};

}  // namespace stload::io
