// Paths and text between Python and stload, as Python's own file functions treat them.
//
// A path from Python is what open() takes: str (encoded with the filesystem encoding and its error
// handler, surrogateescape, i.e. os.fsencode), bytes or os.PathLike; an embedded NUL is refused
// (the C++ side would see a shorter path). A path going back to Python is decoded with os.fsdecode,
// so a file name that is not UTF-8 round-trips. Other text from stload (messages, warnings) is
// decoded as UTF-8 with undecodable bytes shown as \xNN: it is for people and must never fail to
// print.
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <string_view>
#include <vector>

namespace stload::python {

// `path` as bytes for the C++ API. TypeError for anything open() would refuse (with its message),
// UnicodeEncodeError for a str that cannot be encoded, stload.InvalidArgumentError (a ValueError)
// "embedded null byte" for a NUL. Needs the GIL.
std::string PathFromPython(pybind11::handle path);

// PathFromPython of every element of an iterable.
std::vector<std::string> PathsFromPython(pybind11::handle paths);

// os.fsdecode(path).
pybind11::str PathToPython(std::string_view path);

// `text` (UTF-8 in principle, with file names in it that may not be) as a str; bytes that are not
// UTF-8 become \xNN.
pybind11::str TextToPython(std::string_view text);

// `text` as valid UTF-8, bytes that are not UTF-8 spelled \xNN, for C APIs that take a char*
// (PyErr_WarnEx) and decode it strictly. Needs the GIL.
std::string DisplayUtf8(std::string_view text);

}  // namespace stload::python
