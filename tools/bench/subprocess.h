// Running another program and collecting what it prints. The benchmark runs each measured load
// as a child (`stload load --json`), so every repetition starts with a fresh address space and
// reports its own peak RSS, as a server starting up would; the chart is drawn by a Python script.
#pragma once

#include <string>
#include <vector>

#include "stload/result.h"

namespace stload::cli::bench {

// The path of the running executable (/proc/self/exe), e.g. to find files installed beside it.
Result<std::string> SelfExecutable();

// Runs `program` (looked up in PATH when it has no '/') with `arguments`, argv[0] being
// `name` (the program if empty), and returns its stdout. Its stderr goes to ours. A non-zero exit
// status or a signal is an error saying which. "/proc/self/exe" runs this very binary even if
// its file was replaced or deleted meanwhile.
// kCancelled if a signal that ForwardTerminationSignals handles arrived meanwhile (the child
// got it too and has ended).
Result<std::string> RunCapturingStdout(const std::string& program,
                                       const std::vector<std::string>& arguments,
                                       const std::string& name = "");

// Handles SIGINT, SIGTERM and SIGHUP (those not ignored, as a shell's `&` ignores SIGINT) so that
// a child of RunCapturingStdout is not left running when one of them ends this process: while a
// child runs, the signal is sent on to it (with SIGCONT, in case it is stopped) and
// RunCapturingStdout returns kCancelled once it has ended; the caller cleans up and calls
// RaiseForwardedSignal. While no child runs, the signal ends the process at once, as by default.
void ForwardTerminationSignals();

// Ends the process by the signal that was forwarded, the conventional way (a shell then reports
// 128 + the signal number); returns at once if none was.
void RaiseForwardedSignal();

}  // namespace stload::cli::bench
