#include "formats/safetensors_writer.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>

#include "formats/file_util.h"
#include "formats/planned_file.h"
#include "formats/safetensors_reader.h"

namespace alloy::formats {
namespace {

constexpr std::string_view kMetadataKey = "__metadata__";

// JSON string literal exactly as serde_json writes it: only '"', '\\' and
// control characters are escaped (lowercase \u00xx), UTF-8 passes through.
// nlohmann's dump() with ensure_ascii=false does the same; it throws on
// invalid UTF-8, which we turn into kInvalidArgument.
Status AppendJsonString(std::string* out, const std::string& s, std::string_view what) {
  // Fast path for the common case (printable ASCII, nothing to escape);
  // nlohmann's dump walks a UTF-8 state machine per byte.
  const bool plain = std::all_of(
      s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
  if (plain) {
    *out += '"';
    *out += s;
    *out += '"';
    return Status::OK();
  }
  try {
    *out += nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    return Status::InvalidArgument(std::string(what) + " is not valid UTF-8");
  }
  return Status::OK();
}

Status HeaderTooLarge(uint64_t n, bool at_least) {
  return Status::InvalidArgument(
      "safetensors header of " + std::string(at_least ? "at least " : "") + std::to_string(n) +
      " bytes exceeds the limit of " + std::to_string(kMaxSafetensorsHeaderBytes));
}

std::string TensorLabel(const std::string& name) { return "tensor '" + name + "'"; }

}  // namespace

Result<SafetensorsLayout> PlanSafetensorsLayout(
    const std::vector<TensorInfo>& tensors, const std::map<std::string, std::string>& metadata) {
  // Validate every entry before building anything.
  for (const TensorInfo& t : tensors) {
    if (t.name.empty()) return Status::InvalidArgument("empty tensor name");
    if (t.name == kMetadataKey) {
      return Status::InvalidArgument(
          "tensor name '__metadata__' is reserved in safetensors (the file would be unreadable)");
    }
    Result<uint64_t> expected = CheckedByteSize(t.dtype, t.shape);
    if (!expected.ok()) {
      return Status::InvalidArgument(TensorLabel(t.name) + ": " + expected.status().message());
    }
    if (*expected != t.nbytes) {
      return Status::InvalidArgument(TensorLabel(t.name) + ": nbytes " + std::to_string(t.nbytes) +
                                     " disagrees with " + std::string(DTypeName(t.dtype)) +
                                     " shape " + ShapeString(t.shape) + " (" +
                                     std::to_string(*expected) + " bytes)");
    }
  }

  // Data order: dtype descending in enum order, then name ascending byte-wise
  // (std::string compares as unsigned char, like Rust's str ordering).
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (tensors[a].dtype != tensors[b].dtype) return tensors[a].dtype > tensors[b].dtype;
    return tensors[a].name < tensors[b].name;
  });
  {
    std::vector<const std::string*> names;
    names.reserve(tensors.size());
    for (const TensorInfo& t : tensors) names.push_back(&t.name);
    std::sort(names.begin(), names.end(),
              [](const std::string* a, const std::string* b) { return *a < *b; });
    for (size_t i = 1; i < names.size(); ++i) {
      if (*names[i] == *names[i - 1]) {
        return Status::InvalidArgument("duplicate tensor name '" + *names[i] + "'");
      }
    }
  }

  SafetensorsLayout layout;
  layout.data_offsets.assign(tensors.size(), 0);

  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");  // transformers refuses files without a valid format

  // Refuse oversized headers before building them: names and metadata
  // appear at least verbatim, plus quotes and separators.
  uint64_t lower_bound = 0;
  for (const auto& [key, value] : meta) lower_bound += key.size() + value.size() + 6;
  for (const TensorInfo& t : tensors) lower_bound += t.name.size() + 3;
  if (lower_bound > kMaxSafetensorsHeaderBytes) return HeaderTooLarge(lower_bound, true);

  std::string json = "{\"__metadata__\":{";
  bool first = true;
  for (const auto& [key, value] : meta) {
    if (!first) json += ',';
    first = false;
    ALLOY_RETURN_IF_ERROR(AppendJsonString(&json, key, "metadata key"));
    json += ':';
    ALLOY_RETURN_IF_ERROR(AppendJsonString(&json, value, "metadata value for '" + key + "'"));
  }
  json += '}';

  uint64_t running = 0;
  for (size_t idx : order) {
    const TensorInfo& t = tensors[idx];
    uint64_t end = 0;
    if (!CheckedAdd(running, t.nbytes, &end)) {
      return Status::InvalidArgument("total tensor size overflows 64 bits at " +
                                     TensorLabel(t.name));
    }
    layout.data_offsets[idx] = running;
    json += ',';
    ALLOY_RETURN_IF_ERROR(AppendJsonString(&json, t.name, "tensor name"));
    json += ":{\"dtype\":\"";
    json += DTypeName(t.dtype);
    json += "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d) json += ',';
      json += std::to_string(t.shape[d]);
    }
    json += "],\"data_offsets\":[";
    json += std::to_string(running);
    json += ',';
    json += std::to_string(end);
    json += "]}";
    running = end;
    // Stop early instead of building a gigantic string we will refuse anyway.
    if (json.size() > kMaxSafetensorsHeaderBytes) break;
  }
  json += '}';

  // Pad with spaces so the data section starts 8-aligned (reference >= 0.3).
  const uint64_t n = (json.size() + 7) / 8 * 8;
  if (n > kMaxSafetensorsHeaderBytes) {
    return HeaderTooLarge(n, false);
  }
  json.resize(static_cast<size_t>(n), ' ');

  layout.header.resize(8);
  for (int i = 0; i < 8; ++i) {
    layout.header[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  }
  layout.header += json;
  layout.file_size = 8 + n + running;
  return layout;
}

namespace {

class SafetensorsWriter final : public TensorSink {
 public:
  SafetensorsWriter(std::string path, SafetensorsWriterOptions options)
      : file_(std::move(path), options.fsync) {}
  ~SafetensorsWriter() override { Abort(); }

  Status Begin(const std::vector<TensorInfo>& tensors,
               const std::map<std::string, std::string>& metadata) override;
  Status WriteAt(size_t index, uint64_t offset, std::span<const uint8_t> bytes) override {
    return file_.WriteAt(index, offset, bytes);
  }
  Status Finish() override { return file_.Finish(); }
  void Abort() override { file_.Abort(); }

 private:
  PlannedFile file_;
};

Status SafetensorsWriter::Begin(const std::vector<TensorInfo>& tensors,
                                const std::map<std::string, std::string>& metadata) {
  if (file_.created()) return Status::InvalidArgument(file_.path() + ": Begin() called twice");
  Result<SafetensorsLayout> planned = PlanSafetensorsLayout(tensors, metadata);
  if (!planned.ok()) return planned.status().WithContext(file_.path());
  const SafetensorsLayout& layout = *planned;
  std::vector<PlannedFile::Region> regions(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    regions[i] = {TensorLabel(tensors[i].name), layout.header.size() + layout.data_offsets[i],
                  tensors[i].nbytes};
  }
  return file_.Create(layout.header, layout.file_size, std::move(regions));
}

}  // namespace

std::unique_ptr<TensorSink> MakeSafetensorsWriter(std::string path,
                                                  SafetensorsWriterOptions options) {
  return std::make_unique<SafetensorsWriter>(std::move(path), options);
}

}  // namespace alloy::formats
