#include "tosec/svm/engine_registry.h"

#include "tosec/svm/literal_engine.h"

// Real engines, when their libraries were built (svm_runtime/src/CMakeLists.txt defines these).
#if TOSEC_HAVE_IDS
#include "tosec/svm/engines/ids.h"
#endif
#if TOSEC_HAVE_WAF
#include "tosec/svm/engines/waf.h"
#endif
#if TOSEC_HAVE_AV
#include "tosec/svm/engines/av.h"
#endif
#if TOSEC_HAVE_ACL
#include "tosec/svm/engines/acl.h"
#endif

namespace tosec::svm {

rpc::Status EngineRegistry::add(std::string kind, EngineFactory factory) {
  if (factories_.contains(kind)) {
    return rpc::Error{EEXIST, "engine registry: kind '" + kind + "' already registered"};
  }
  factories_.emplace(std::move(kind), std::move(factory));
  return {};
}

bool EngineRegistry::has(std::string_view kind) const {
  return factories_.find(kind) != factories_.end();
}

std::vector<std::string> EngineRegistry::kinds() const {
  std::vector<std::string> out;
  for (const auto& [k, f] : factories_) out.push_back(k);
  return out;
}

rpc::Result<std::unique_ptr<Engine>> EngineRegistry::create(std::string_view kind,
                                                            const EngineConfig& config) const {
  auto it = factories_.find(kind);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [k, f] : factories_) known += (known.empty() ? "" : ", ") + k;
    return rpc::Error{ENOENT, "engine registry: no engine '" + std::string(kind) +
                                  "' in this build (known: " + known + ")"};
  }
  return it->second(config);
}

EngineRegistry EngineRegistry::builtin() {
  EngineRegistry r;
  (void)r.add("literal", make_literal_engine);
#if TOSEC_HAVE_IDS
  (void)r.add("ids", make_ids_engine);
#endif
#if TOSEC_HAVE_WAF
  (void)r.add("waf", make_waf_engine);
#endif
#if TOSEC_HAVE_AV
  (void)r.add("av", make_av_engine);
#endif
#if TOSEC_HAVE_ACL
  (void)r.add("acl", make_acl_engine);
#endif
  return r;
}

}  // namespace tosec::svm
