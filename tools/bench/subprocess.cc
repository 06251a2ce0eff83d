#include "bench/subprocess.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <filesystem>

extern char** environ;

namespace stload::cli::bench {

Result<std::string> SelfExecutable() {
  char self[PATH_MAX];
  const ssize_t length = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) return IoError(errno, "readlink /proc/self/exe");
  return std::string(self, static_cast<size_t>(length));
}

Result<std::string> RunCapturingStdout(const std::string& program,
                                       const std::vector<std::string>& arguments) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return IoError(errno, "pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);

  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const std::string& a : arguments) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned =
      ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  const std::string name = std::filesystem::path(program).filename();
  if (spawned != 0) {
    ::close(pipe_fds[0]);
    return IoError(spawned, "cannot run " + name);
  }

  std::string output;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(pipe_fds[0], chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(chunk, static_cast<size_t>(n));
  }
  ::close(pipe_fds[0]);
  int wait_status = 0;
  while (::waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) return output;
  const std::string how = WIFEXITED(wait_status)
                              ? "exited with status " + std::to_string(WEXITSTATUS(wait_status))
                              : "was killed by signal " + std::to_string(WTERMSIG(wait_status));
  return InternalError(name + " " + how);
}

}  // namespace stload::cli::bench
