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
                                       const std::vector<std::string>& arguments,
                                       const std::string& name) {
  const std::string shown = name.empty() ? std::filesystem::path(program).filename().string() : name;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return IoError(errno, "pipe");
  posix_spawn_file_actions_t actions;
  int rc = posix_spawn_file_actions_init(&actions);
  if (rc == 0) {
    rc = posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    if (rc != 0) posix_spawn_file_actions_destroy(&actions);
  }
  if (rc != 0) {
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    return IoError(rc, "cannot prepare to run " + shown);
  }

  const std::string argv0 = name.empty() ? program : name;
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(argv0.c_str()));
  for (const std::string& a : arguments) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned =
      ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (spawned != 0) {
    ::close(pipe_fds[0]);
    return IoError(spawned, "cannot run " + shown);
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
  for (;;) {
    if (::waitpid(pid, &wait_status, 0) == pid) break;
    if (errno != EINTR) return IoError(errno, "waiting for " + shown);
  }
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) return output;
  const std::string how = WIFEXITED(wait_status)
                              ? "exited with status " + std::to_string(WEXITSTATUS(wait_status))
                              : "was killed by signal " + std::to_string(WTERMSIG(wait_status));
  return InternalError(shown + " " + how);
}

}  // namespace stload::cli::bench
