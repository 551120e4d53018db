// RelistedSource: the base of TensorSource decorators that wrap another
// source and list tensors of their own (GGUF names mapped to HF names, FP8
// weights listed as float32): it owns the inner source and the new listing,
// answers name/tensors/Find/metadata/files, and maps a listed TensorInfo back
// to its position. Subclasses implement View/Read/Release.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/tensor_source.h"

namespace alloy::merge {

class RelistedSource : public formats::TensorSource {
 public:
  RelistedSource(std::unique_ptr<formats::TensorSource> inner,
                 std::vector<formats::TensorInfo> infos)
      : inner_(std::move(inner)), infos_(std::move(infos)) {
    for (size_t i = 0; i < infos_.size(); ++i) by_name_.emplace(infos_[i].name, i);
  }

  const std::string& name() const override { return inner_->name(); }
  const std::vector<formats::TensorInfo>& tensors() const override { return infos_; }
  const formats::TensorInfo* Find(std::string_view name) const override {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &infos_[it->second];
  }
  const std::map<std::string, std::string>& metadata() const override {
    return inner_->metadata();
  }
  const std::vector<std::string>& files() const override { return inner_->files(); }
  const formats::TensorSource& inner() const { return *inner_; }

 protected:
  // The position of `info` in tensors(): by address when it is one of ours,
  // else by name. REQUIRES: a listed name.
  size_t IndexOf(const formats::TensorInfo& info) const {
    if (&info >= infos_.data() && &info < infos_.data() + infos_.size()) {
      return static_cast<size_t>(&info - infos_.data());
    }
    return by_name_.at(info.name);
  }

  std::unique_ptr<formats::TensorSource> inner_;

 private:
  std::vector<formats::TensorInfo> infos_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

}  // namespace alloy::merge
