// The machine's single-copy limit for a set of files, measured the way the loader is judged:
// read() of each whole file into a buffer of its size that was touched beforehand (so no page
// faults are counted), one file after another. Prints one JSON object:
//   {"bytes": N, "seconds": S, "gb_per_s": R}
// Usage: stload_read_limit FILE...   (drop the page cache first for a cold measurement)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE...\n", argv[0]);
    return 2;
  }
  size_t largest = 0;
  std::vector<size_t> sizes;
  for (int i = 1; i < argc; ++i) {
    struct stat st {};
    if (::stat(argv[i], &st) != 0) {
      std::perror(argv[i]);
      return 1;
    }
    sizes.push_back(static_cast<size_t>(st.st_size));
    if (sizes.back() > largest) largest = sizes.back();
  }
  void* mem = ::mmap(nullptr, largest, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  ::madvise(mem, largest, MADV_HUGEPAGE);
  std::memset(mem, 1, largest);  // touched before the clock starts
  char* buffer = static_cast<char*>(mem);
  size_t total = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1; i < argc; ++i) {
    int fd = ::open(argv[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      std::perror(argv[i]);
      return 1;
    }
    size_t done = 0;
    while (done < sizes[i - 1]) {
      ssize_t n = ::read(fd, buffer + done, sizes[i - 1] - done);
      if (n <= 0) {
        std::perror("read");
        return 1;
      }
      done += static_cast<size_t>(n);
    }
    total += done;
    ::close(fd);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"bytes\": %zu, \"seconds\": %.6f, \"gb_per_s\": %.4f}\n", total, seconds,
              total / seconds / 1e9);
  return 0;
}
