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
Result<std::string> RunCapturingStdout(const std::string& program,
                                       const std::vector<std::string>& arguments,
                                       const std::string& name = "");

}  // namespace stload::cli::bench
