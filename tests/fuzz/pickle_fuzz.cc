// Fuzzes the allow-list unpickler (formats/pickle.h) on raw pickle bytes with
// the default limits, then walks the value graph it returns (memo references
// make it a DAG, APPEND of a list to itself a cycle) checking the documented
// shapes of each kind, and describes the root.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "formats/pickle.h"

namespace {

using alloy::formats::PickleKind;
using alloy::formats::PickleValue;

// Every node once; traps when a node breaks the contract of pickle.h.
size_t Walk(const PickleValue& root) {
  std::unordered_set<const PickleValue*> seen;
  std::vector<const PickleValue*> todo = {&root};
  while (!todo.empty()) {
    const PickleValue* v = todo.back();
    todo.pop_back();
    if (v == nullptr) __builtin_trap();
    if (!seen.insert(v).second) continue;
    switch (v->kind) {
      case PickleKind::kDict:
        if (v->items.size() % 2 != 0) __builtin_trap();
        break;
      case PickleKind::kGlobal:
        if (!alloy::formats::IsAllowedPickleGlobal(v->text, v->name)) __builtin_trap();
        break;
      case PickleKind::kCall:
        if (v->items.size() != 2 || v->items[0]->kind != PickleKind::kGlobal ||
            v->items[1]->kind != PickleKind::kTuple) {
          __builtin_trap();
        }
        break;
      case PickleKind::kPersistentId:
        if (v->items.size() != 1) __builtin_trap();
        break;
      case PickleKind::kTuple:
      case PickleKind::kList:
        break;
      default:
        if (!v->items.empty()) __builtin_trap();  // scalars hold no references
        break;
    }
    (void)alloy::formats::DescribePickleValue(*v);
    for (const PickleValue* item : v->items) todo.push_back(item);
  }
  return seen.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alloy::formats;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Result<std::unique_ptr<Pickle>> pickle = Unpickle(bytes, "fuzz.pkl");
  if (!pickle.ok()) {
    if (pickle.status().message().rfind("fuzz.pkl: ", 0) != 0) __builtin_trap();
    return 0;
  }
  (void)DescribePickleValue((*pickle)->root());
  // Every reachable value lives in the Pickle's arena.
  if (Walk((*pickle)->root()) > (*pickle)->object_count()) __builtin_trap();
  return 0;
}
