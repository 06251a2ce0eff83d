// A program that uses stload as an installed library would: only <stload/...> headers and the
// stload::stload target (or -lstload). It writes a small safetensors file, loads it through the
// streaming Loader and through LoadInto, and checks every byte. Exit 0 and "consumer: ok" on
// success; a message and exit 1 otherwise.
#include <stload/checkpoint.h>
#include <stload/load_config.h>
#include <stload/loader.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "consumer: %s\n", what.c_str());
  return 1;
}

// Byte i of tensor t: a pattern that differs between tensors and positions.
std::byte Pattern(size_t t, size_t i) { return static_cast<std::byte>((t * 131 + i * 7) & 0xff); }

// Two U8 tensors "a" (3 bytes) and "b" (5 bytes) in one file.
std::string WriteCheckpoint(const std::filesystem::path& dir) {
  const std::string header =
      R"({"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
      R"("b":{"dtype":"U8","shape":[5],"data_offsets":[3,8]}})";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  file += header;
  for (size_t i = 0; i < 3; ++i) file += static_cast<char>(Pattern(0, i));
  for (size_t i = 0; i < 5; ++i) file += static_cast<char>(Pattern(1, i));
  const std::filesystem::path path = dir / "model.safetensors";
  std::ofstream(path, std::ios::binary) << file;
  return path.string();
}

bool Expected(size_t t, std::span<const std::byte> bytes) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] != Pattern(t, i)) return false;
  }
  return true;
}

}  // namespace

int main() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "stload-consumer-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) return Fail("cannot make a temporary directory");
  const std::filesystem::path dir = tmpl;
  const std::string path = WriteCheckpoint(dir);

  int rc = [&] {
    stload::Result<stload::Checkpoint> checkpoint = stload::Checkpoint::Open(path);
    if (!checkpoint.ok()) return Fail(checkpoint.status().ToString());
    if (checkpoint->tensors().size() != 2) return Fail("expected 2 tensors");

    stload::LoadConfig config;
    config.enable_multithread_load = true;
    config.num_threads = 2;
    stload::Result<stload::Loader> loader = stload::Loader::Open(*checkpoint, config);
    if (!loader.ok()) return Fail(loader.status().ToString());
    size_t seen = 0;
    for (stload::Weight& w : *loader) {
      const size_t t = w.name() == "a" ? 0 : 1;
      if (!Expected(t, w.bytes())) return Fail("wrong bytes in " + w.name());
      ++seen;
    }
    if (!loader->status().ok()) return Fail(loader->status().ToString());
    if (seen != 2) return Fail("the loader delivered " + std::to_string(seen) + " tensors");

    std::vector<std::byte> a(3), b(5);
    const stload::Destination destinations[] = {{*checkpoint->Find("a"), a},
                                                {*checkpoint->Find("b"), b}};
    stload::Status status = stload::LoadInto(*checkpoint, destinations, {.config = config}).status;
    if (!status.ok()) return Fail(status.ToString());
    if (!Expected(0, a) || !Expected(1, b)) return Fail("LoadInto read wrong bytes");

    // A bad file is an error, not a crash.
    std::ofstream(dir / "bad.safetensors", std::ios::binary) << "not a checkpoint";
    const std::string bad_path = (dir / "bad.safetensors").string();
    if (stload::Checkpoint::Open(bad_path).ok()) return Fail("a corrupt file opened");
    return 0;
  }();
  std::filesystem::remove_all(dir);
  if (rc == 0) std::printf("consumer: ok\n");
  return rc;
}
