// PyTorch checkpoint reader: the zip archives torch.save writes (torch >= 1.6,
// `pytorch_model.bin`, `.pt`), exposed as a TensorSource without executing
// anything from the file (checkpoint-formats.md §3).
//
// Layout (all entries under one top-level directory <prefix>/, STORED):
//   <prefix>/data.pkl     pickle (protocol 2) of the state dict
//   <prefix>/data/<key>   raw bytes of storage <key>, 64-byte aligned
//   <prefix>/byteorder    "little" or "big" (absent: little)
//   <prefix>/version      format version, informational
//
// Reading: the zip layout is validated (zip_reader.h), data.pkl is unpickled
// by the allow-list unpickler (pickle.h) into inert values, and the state dict
// (unwrapping {"state_dict": ...} / {"model": ...} when the top level holds
// no tensors) becomes one TensorInfo per key, in the dict's order. Each
// tensor is a view (offset, size, stride, in elements) into a storage entry;
// views are bounds-checked against the storage, and tensors sharing a storage
// (tied weights, slices) share its bytes. Read() returns C-order bytes:
// contiguous little-endian views are read straight from the file,
// non-contiguous ones (a saved `.T`) are gathered and big-endian files are
// byte-swapped. View() is zero-copy for contiguous little-endian tensors and
// otherwise materializes a per-tensor buffer that Release() of the whole
// tensor frees.
//
// Refused with kUnsupported: legacy (pre-1.6) pickle files, "PYTORCH1"
// archives, tar archives, TorchScript archives, compressed storages,
// disallowed globals and opcodes, dtypes alloy has no type for (complex128).
//
// Thread safety: the returned source is safe to use from several threads.
#pragma once

#include <memory>
#include <string>

#include "formats/byte_source.h"
#include "formats/status.h"
#include "formats/tensor_source.h"

namespace alloy::formats {

// Validates the torch.save archive in `src` and wraps it.
// Fails with kUnsupported for the formats listed above; with kCorrupt for an
// invalid archive ("invalid archive: ..."), a corrupt pickle, an "invalid
// persistent id", a "missing storage", a "storage size mismatch", a
// "conflicting storage dtype", an "out-of-bounds view", an "unknown byte
// order", or a value that is not a tensor; with kIoError when a read fails.
// Every message starts with src->name().
Result<std::unique_ptr<TensorSource>> OpenTorch(std::unique_ptr<ByteSource> src);

// Opens and validates the file at `path`; fails like OpenTorch or OpenFileSource.
Result<std::unique_ptr<TensorSource>> OpenTorchFile(const std::string& path,
                                                    FileAccess access = FileAccess::kMmap);

}  // namespace alloy::formats
