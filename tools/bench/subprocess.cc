#include "bench/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <filesystem>

extern char** environ;

namespace stload::cli::bench {
namespace {

constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP};

// The running child (0: none) and the signal forwarded to it (0: none). Only the handler and the
// code that blocks the signals around their changes touch them.
volatile sig_atomic_t g_child = 0;
volatile sig_atomic_t g_signal = 0;

void EndBySignal(int sig) {
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  ::sigaction(sig, &action, nullptr);
  ::raise(sig);  // delivered as soon as the signal is unblocked (on return from the handler)
}

// Async-signal-safe: sigaction, raise, kill, and errno saved.
void OnTerminationSignal(int sig) {
  const int saved_errno = errno;
  const pid_t child = static_cast<pid_t>(g_child);
  if (child <= 0) {
    EndBySignal(sig);
  } else {
    g_signal = sig;
    ::kill(child, sig);
    ::kill(child, SIGCONT);
  }
  errno = saved_errno;
}

sigset_t ForwardedSet() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kForwarded) sigaddset(&set, sig);
  return set;
}

}  // namespace

void ForwardTerminationSignals() {
  for (int sig : kForwarded) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler == SIG_IGN) continue;
    struct sigaction action {};
    action.sa_handler = OnTerminationSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: a blocked read returns EINTR and is retried
    ::sigaction(sig, &action, nullptr);
  }
}

void RaiseForwardedSignal() {
  const int sig = g_signal;
  if (sig == 0) return;
  EndBySignal(sig);
  const sigset_t set = ForwardedSet();
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  ::_exit(128 + sig);  // not reached: the signal's default action ends the process
}

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
  // The forwarded signals wait while the child starts, until the handler knows its pid: one
  // arriving in between would otherwise end this process and leave the child running. The child
  // starts with the signal mask this process had.
  const sigset_t forwarded = ForwardedSet();
  sigset_t previous;
  ::pthread_sigmask(SIG_BLOCK, &forwarded, &previous);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setsigmask(&attributes, &previous);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  const int spawned =
      ::posix_spawnp(&pid, program.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (spawned == 0) g_child = pid;
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
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
  // Wait for the child's exit without reaping it (WNOWAIT): while it is a zombie its pid cannot
  // be reused, so a signal forwarded meanwhile reaches no other process. Only with the forwarded
  // signals blocked and g_child cleared is it reaped.
  int wait_errno = 0;
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) == 0) break;
    if (errno != EINTR) {
      wait_errno = errno;
      break;
    }
  }
  ::pthread_sigmask(SIG_BLOCK, &forwarded, &previous);
  g_child = 0;
  int wait_status = 0;
  if (wait_errno == 0) {
    while (::waitpid(pid, &wait_status, 0) != pid) {
      if (errno != EINTR) {
        wait_errno = errno;
        break;
      }
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (g_signal != 0) {
    return CancelledError(shown + " was ended by signal " + std::to_string(g_signal) +
                          ", sent to this process");
  }
  if (wait_errno != 0) return IoError(wait_errno, "waiting for " + shown);
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) return output;
  const std::string how = WIFEXITED(wait_status)
                              ? "exited with status " + std::to_string(WEXITSTATUS(wait_status))
                              : "was killed by signal " + std::to_string(WTERMSIG(wait_status));
  return InternalError(shown + " " + how);
}

}  // namespace stload::cli::bench
