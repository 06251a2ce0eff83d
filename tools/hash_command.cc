// `stload hash PATH`: the SHA-256 of every tensor's raw bytes, one line per tensor sorted by name
// (byte order), in the format of sha256sum: "<hex>  <name>".
#include <openssl/evp.h>

#include <algorithm>
#include <iostream>
#include <memory>

#include "cli_common.h"
#include "commands.h"
#include "stload/checkpoint.h"

namespace stload::cli {
namespace {

constexpr uint64_t kHashBufferBytes = 16ull << 20;

struct HashArgs {
  std::string path;
  LoadFlags flags;
};

struct EvpCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

std::string Hex(const unsigned char* digest, unsigned int size) {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex(2 * size, '0');
  for (unsigned int i = 0; i < size; ++i) {
    hex[2 * i] = kDigits[digest[i] >> 4];
    hex[2 * i + 1] = kDigits[digest[i] & 15];
  }
  return hex;
}

// Reads tensor `index` in pieces into `buffer` and returns its SHA-256 in hex.
Result<std::string> HashTensor(const Checkpoint& ckpt, uint32_t index, std::vector<std::byte>& buffer,
                               EVP_MD_CTX* ctx) {
  const TensorInfo& t = ckpt.tensors()[index];
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) return InternalError("SHA-256 init failed");
  for (uint64_t done = 0; done < t.size_bytes();) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buffer.size(), t.size_bytes() - done));
    std::span<std::byte> piece(buffer.data(), n);
    STLOAD_RETURN_IF_ERROR(ckpt.ReadTensorBytes(index, done, piece));
    if (EVP_DigestUpdate(ctx, piece.data(), n) != 1) return InternalError("SHA-256 update failed");
    done += n;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_DigestFinal_ex(ctx, digest, &size) != 1) return InternalError("SHA-256 final failed");
  return Hex(digest, size);
}

int RunHash(const HashArgs& args) {
  const LoadConfig config = args.flags.ToConfig();
  (void)config;  // every option combination reads the same bytes; see the loader issue
  Result<Checkpoint> ckpt = Checkpoint::Open(args.path);
  if (!ckpt.ok()) return ReportError(ckpt.status());
  for (const std::string& w : ckpt->warnings()) Warn(w);

  std::vector<uint32_t> order(ckpt->tensors().size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return ckpt->tensors()[a].name < ckpt->tensors()[b].name;
  });
  std::unique_ptr<EVP_MD_CTX, EvpCtxDeleter> ctx(EVP_MD_CTX_new());
  if (!ctx) return ReportError(InternalError("cannot create a SHA-256 context"));
  std::vector<std::byte> buffer(std::min<uint64_t>(kHashBufferBytes, ckpt->total_bytes()));
  std::string out;
  for (uint32_t index : order) {
    Result<std::string> hex = HashTensor(*ckpt, index, buffer, ctx.get());
    if (!hex.ok()) return ReportError(hex.status());
    out += *hex + "  " + ckpt->tensors()[index].name + "\n";
  }
  std::cout << out;
  return kExitOk;
}

}  // namespace

Runner AddHashCommand(CLI::App& app) {
  auto args = std::make_shared<HashArgs>();
  CLI::App* cmd = app.add_subcommand(
      "hash", "Print the SHA-256 of each tensor's raw bytes: '<hex>  <name>', sorted by name");
  cmd->add_option("PATH", args->path,
                  "A .safetensors file, a directory of shards, or model.safetensors.index.json")
      ->required();
  args->flags.AddTo(*cmd);
  return [args] { return RunHash(*args); };
}

}  // namespace stload::cli
