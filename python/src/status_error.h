// stload::Status -> Python exception.
#pragma once

#include <string>
#include <vector>

#include "stload/status.h"

namespace stload::python {

// Raises the stload.Error subclass for status.code() (defined in stload/_errors.py), carrying the
// message (which starts with the file's base name) and the structured context. Needs the GIL.
[[noreturn]] void ThrowStatus(const Status& status);

// Turns `warnings` into Python RuntimeWarnings ("stload: ..."), in order, and clears the list.
// When a warnings filter turns one into an exception, raises it and leaves the ones not yet
// emitted in `warnings`. Needs the GIL.
void EmitWarnings(std::vector<std::string>& warnings);

}  // namespace stload::python
