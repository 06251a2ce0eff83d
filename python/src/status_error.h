// stload::Status -> Python exception.
#pragma once

#include "stload/status.h"

namespace stload::python {

// Raises the stload.Error subclass for status.code() (defined in stload/_errors.py), carrying the
// message (which starts with the file's base name) and the structured context. Needs the GIL.
[[noreturn]] void ThrowStatus(const Status& status);

}  // namespace stload::python
