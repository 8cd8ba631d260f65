// Engine registry: engine kind ("ids", "waf", "av", "acl", "literal") -> EngineFactory.
//
// builtin() holds every engine this build has: the real engines whose libraries were built
// (svm_runtime/engines/<kind>/, detected by CMake: TOSEC_HAVE_<KIND>) and the small "literal"
// engine of this runtime (literal_engine.h), which tests and demos use when no real engine is
// wanted. Vendors register their own factories the same way (docs/porting-an-engine.md).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm {

class EngineRegistry {
 public:
  // Registers `factory` under `kind`; EEXIST if the kind is taken.
  rpc::Status add(std::string kind, EngineFactory factory);
  bool has(std::string_view kind) const;
  std::vector<std::string> kinds() const;
  // Builds an engine; ENOENT naming the known kinds if `kind` is not registered, else the
  // factory's own error (which names the rules file and line).
  rpc::Result<std::unique_ptr<Engine>> create(std::string_view kind,
                                              const EngineConfig& config) const;

  // Every engine compiled into this build.
  static EngineRegistry builtin();

 private:
  std::map<std::string, EngineFactory, std::less<>> factories_;
};

}  // namespace tosec::svm
