// sce (mergekit-semantics.md §1.12). Not written yet: see issue 3.
#include "merge/methods/methods.h"

namespace alloy::merge::methods {

std::unique_ptr<MergeMethod> MakeSce() { return nullptr; }

}  // namespace alloy::merge::methods
