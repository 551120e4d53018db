// ram / ramplus_tl (mergekit-semantics.md §1.13). Not written yet: see issue 3.
#include "merge/methods/methods.h"

namespace alloy::merge::methods {

std::unique_ptr<MergeMethod> MakeRam(std::string_view) { return nullptr; }

}  // namespace alloy::merge::methods
