// Communicators for ranks that are threads of one process: the tests' stand-in for MPI, with the
// same semantics (matching in order, sizes checked, a timeout instead of a hang).
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "stload/distributed.h"

namespace stload::dist {

// `size` communicators, one per rank (rank i is element i), sharing one group. Each is used by
// one thread. A call that waits longer than `timeout` for the other ranks fails with
// kDeadlineExceeded, and so does every later call on any rank of the group (it is broken).
std::vector<std::unique_ptr<Communicator>> MakeThreadCommunicators(
    int size, std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace stload::dist
