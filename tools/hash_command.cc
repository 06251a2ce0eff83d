// `stload hash PATH`: the SHA-256 of every tensor's raw bytes (with rank flags: of the rank's part
// of each tensor it gets, dense in C order; the others are absent), one line per tensor sorted by name
// (byte order), in the format of sha256sum: "<hex>  <name>", with sha256sum's escaping of names
// holding a backslash, newline or carriage return (the line then starts with a backslash), so a
// name cannot forge lines. Reads through the loader with the given options; every option
// combination prints the same lines.
//
// With --distributed (under mpirun), each rank hashes its own parts, loading together with the
// others (each byte read from storage once). With --output-dir DIR each rank writes its lines to
// DIR/rank-R.sha256 (plain sha256sum format); without it, rank 0 collects every rank's lines and
// prints them rank by rank, each rank's after a line "# rank R of N". Rank 0 then prints a summary
// on stderr.
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "cli_common.h"
#include "commands.h"
#include "distributed_cli.h"
#include "progress_bar.h"
#include "stload/checkpoint.h"
#include "stload/distributed.h"
#include "stload/loader.h"

namespace stload::cli {
namespace {

struct HashArgs {
  std::string path;
  LoadFlags flags;
  bool no_progress = false;
  DistributedFlags dist;
  std::optional<std::string> output_dir;
};

struct EvpCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

std::string Sha256Hex(std::span<const std::byte> bytes) {
  static const char kDigits[] = "0123456789abcdef";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  std::unique_ptr<EVP_MD_CTX, EvpCtxDeleter> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), digest, &size) != 1) {
    return "";
  }
  std::string hex(2 * size, '0');
  for (unsigned int i = 0; i < size; ++i) {
    hex[2 * i] = kDigits[digest[i] >> 4];
    hex[2 * i + 1] = kDigits[digest[i] & 15];
  }
  return hex;
}

int RunHash(const HashArgs& args) {
  LoadConfig config = args.flags.ToConfig();
  std::unique_ptr<DistributedSession> session;
  if (args.dist.on) {
    session = DistributedSession::Start(args.dist);
    session->ApplyRanks(args.flags.ranks, config);
  } else if (args.output_dir) {
    throw UsageError{"--output-dir: only with --distributed (one file per rank)"};
  }
  Result<Checkpoint> ckpt = Checkpoint::Open(args.path);
  if (session) {
    if (Status agreed = session->Agree(ckpt.status()); !agreed.ok()) return ReportError(agreed, args.path);
  }
  if (!ckpt.ok()) return ReportError(ckpt.status(), args.path);
  for (const std::string& w : ckpt->warnings()) Warn(w);

  // Usage errors in the rank flags exit 2 before anything is read; a tensor that cannot be split
  // exits 1.
  Result<std::vector<TensorPart>> parts = SelectPartsOrUsageError(*ckpt, config);
  if (session) {
    if (Status agreed = session->Agree(parts.status()); !agreed.ok()) return ReportError(agreed, args.path);
  }
  if (!parts.ok()) return ReportError(parts.status(), args.path);
  ProgressBar bar(!args.no_progress && (!session || session->rank() == 0));
  std::optional<Loader> loader;
  std::optional<DistributedLoader> distributed;
  const auto start = std::chrono::steady_clock::now();
  if (session) {
    Result<DistributedLoader> opened =
        DistributedLoader::Open(*ckpt, config, session->comm(), {}, bar.Callback());
    if (!opened.ok()) return ReportError(opened.status(), args.path);
    distributed.emplace(std::move(*opened));
  } else {
    Result<Loader> opened = Loader::Open(*ckpt, config, bar.Callback());
    if (!opened.ok()) return ReportError(opened.status(), args.path);
    loader.emplace(std::move(*opened));
  }
  for (const std::string& w : (loader ? loader->stats() : distributed->stats()).warnings) Warn(w);

  // Hashing runs on several threads that take weights from the loader in turn.
  std::vector<std::string> hashes(ckpt->tensors().size());
  std::mutex mu;
  Status error;
  auto hasher = [&] {
    while (true) {
      std::optional<Weight> weight;
      {
        std::lock_guard lock(mu);
        if (!error.ok()) return;
        Result<std::optional<Weight>> next = loader ? loader->Next() : distributed->Next();
        if (!next.ok()) {
          error = next.status();
          return;
        }
        if (!next->has_value()) return;
        weight = std::move(**next);
      }
      std::string hex = Sha256Hex(weight->bytes());
      const uint32_t index = *ckpt->Find(weight->name());
      std::lock_guard lock(mu);
      if (hex.empty() && error.ok()) error = InternalError("SHA-256 failed");
      hashes[index] = std::move(hex);
    }
  };
  const int hashers = std::max(
      1, std::min<int>(config.reader_threads(), static_cast<int>(std::thread::hardware_concurrency())));
  std::vector<std::thread> threads;
  for (int i = 1; i < hashers; ++i) {
    // The system may refuse a thread (ulimit -u, a pids cgroup): hash with those there are, as
    // the loader reads with the threads it could start. This thread always hashes too.
    try {
      threads.emplace_back(hasher);
    } catch (const std::system_error&) {
      break;
    }
  }
  hasher();
  for (std::thread& t : threads) t.join();
  if (!error.ok()) return ReportError(error, args.path);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::vector<uint32_t> order(hashes.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return ckpt->tensors()[a].name < ckpt->tensors()[b].name;
  });
  std::string out;
  for (uint32_t index : order) {
    if (hashes[index].empty()) continue;  // not this rank's
    bool escaped = false;
    const std::string name = EscapeLikeSha256sum(ckpt->tensors()[index].name, escaped);
    out += (escaped ? "\\" : "") + hashes[index] + "  " + name + "\n";
  }
  if (!session) {
    Print(out);
    return kExitOk;
  }
  Status written;
  if (args.output_dir) {
    const std::string file = *args.output_dir + "/rank-" + std::to_string(session->rank()) + ".sha256";
    std::error_code ec;
    std::filesystem::create_directories(*args.output_dir, ec);
    std::ofstream f(file, std::ios::binary | std::ios::trunc);
    f << out;
    f.close();
    if (!f) written = IoError(errno, "cannot write the hashes").WithPath(file);
    out.clear();
  }
  if (Status agreed = session->Agree(written); !agreed.ok()) return ReportError(agreed, args.path);
  const DistributedStats d = distributed->distributed_stats();
  const std::string mine = std::to_string(d.read_bytes) + " " + std::to_string(d.received_bytes) +
                           " " + std::to_string(seconds) + "\n" + out;
  Result<std::vector<std::string>> all = session->Gather(mine);
  if (!all.ok()) return ReportError(all.status(), args.path);
  if (session->rank() != 0) return kExitOk;
  uint64_t read = 0, received = 0;
  double slowest = 0;
  std::string printed;
  for (int r = 0; r < session->size(); ++r) {
    const std::string& text = (*all)[r];
    const size_t nl = text.find('\n');
    unsigned long long rd = 0, rc = 0;
    double sec = 0;
    std::sscanf(text.substr(0, nl).c_str(), "%llu %llu %lf", &rd, &rc, &sec);
    read += rd;
    received += rc;
    slowest = std::max(slowest, sec);
    if (!args.output_dir) {
      printed += "# rank " + std::to_string(r) + " of " + std::to_string(session->size()) + "\n" +
                 text.substr(nl + 1);
    }
  }
  Print(printed);
  std::fprintf(stderr,
               "stload: %d ranks hashed in %.3f s (slowest rank): read %s from storage in all "
               "(union of the ranks' needs %s; %d independent loads would read %s), exchanged %s\n",
               session->size(), slowest, FormatBytes(read).c_str(), FormatBytes(d.union_bytes).c_str(),
               session->size(), FormatBytes(d.needed_bytes_all_ranks).c_str(),
               FormatBytes(received).c_str());
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
  cmd->add_flag("--no-progress", args->no_progress, "No progress bar on stderr");
  args->dist.AddTo(*cmd);
  cmd->add_option("--output-dir", args->output_dir,
                  "With --distributed: each rank writes its lines to DIR/rank-R.sha256 instead of "
                  "rank 0 printing every rank's")
      ->type_name("DIR")
      ->group("Distributed loading (under mpirun)");
  return [args] { return RunHash(*args); };
}

}  // namespace stload::cli
