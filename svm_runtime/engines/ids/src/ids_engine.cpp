// make_ids_engine: options, rule loading and compilation, and the Engine / EngineThread objects.
#include <charconv>
#include <mutex>
#include <string>

#include "compiled_rules.h"
#include "ids_stream_inspector.h"
#include "ids_thread_state.h"
#include "tosec/svm/engines/ids.h"

namespace tosec::svm {
namespace {

using ids::CompiledRules;
using ids::IdsOptions;
using ids::ThreadState;

rpc::Result<std::uint64_t> option_number(const std::string& key, const std::string& value,
                                         std::uint64_t lo, std::uint64_t hi) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc{} || p != value.data() + value.size() || v < lo || v > hi) {
    return rpc::Error{EINVAL, "ids: option " + key + " = '" + value + "' must be a number in " +
                                  std::to_string(lo) + ".." + std::to_string(hi)};
  }
  return v;
}

rpc::Result<IdsOptions> parse_options(const std::map<std::string, std::string>& options) {
  IdsOptions o;
  for (const auto& [key, value] : options) {
    if (key == "window_bytes") {
      auto v = option_number(key, value, 256, 16u << 20);
      if (!v) return v.error();
      o.window_bytes = static_cast<std::size_t>(*v);
    } else if (key == "verify_budget") {
      auto v = option_number(key, value, 1, 100000000);
      if (!v) return v.error();
      o.verify_budget = static_cast<std::uint32_t>(*v);
    } else if (key == "pcre_match_limit") {
      auto v = option_number(key, value, 1, 100000000);
      if (!v) return v.error();
      o.pcre_match_limit = static_cast<std::uint32_t>(*v);
    } else {
      return rpc::Error{EINVAL, "ids: unknown option '" + key +
                                    "' (window_bytes, verify_budget, pcre_match_limit)"};
    }
  }
  return o;
}

class IdsEngineThread final : public EngineThread {
 public:
  explicit IdsEngineThread(std::shared_ptr<ThreadState> ts) : ts_(std::move(ts)) {}
  std::unique_ptr<StreamInspector> open_stream(const StreamInfo& info) override {
    return std::make_unique<ids::IdsStreamInspector>(ts_, info);
  }

 private:
  std::shared_ptr<ThreadState> ts_;
};

class IdsEngine final : public Engine {
 public:
  IdsEngine(std::shared_ptr<const CompiledRules> rules, hs_scratch_t* prototype)
      : rules_(std::move(rules)), prototype_(prototype) {}
  ~IdsEngine() override { hs_free_scratch(prototype_); }
  IdsEngine(const IdsEngine&) = delete;
  IdsEngine& operator=(const IdsEngine&) = delete;

  std::string_view kind() const override { return "ids"; }

  rpc::Result<std::unique_ptr<EngineThread>> make_thread() override {
    auto ts = std::make_shared<ThreadState>();
    ts->rules = rules_;
    {
      // make_thread may run on several workers at once; the prototype is only read, but
      // Hyperscan does not promise that concurrent clones are safe.
      std::lock_guard lock(mu_);
      if (prototype_ != nullptr) {
        if (const hs_error_t rc = hs_clone_scratch(prototype_, &ts->scratch); rc != HS_SUCCESS) {
          return rpc::Error{ENOMEM, "ids: hs_clone_scratch failed (" + std::to_string(rc) + ")"};
        }
      }
    }
    auto pcre = ids::PcreThreadState::create(rules_->options().pcre_match_limit);
    if (!pcre) return pcre.error();
    ts->pcre = std::move(*pcre);
    ts->linear = std::make_unique_for_overwrite<std::uint8_t[]>(rules_->options().window_bytes);
    ts->hits.reserve(256);
    return std::unique_ptr<EngineThread>(std::make_unique<IdsEngineThread>(std::move(ts)));
  }

  std::string summary() const override {
    std::size_t alert = 0;
    std::size_t block = 0;
    std::size_t pass = 0;
    for (const auto& r : rules_->rules()) {
      if (r.is_pass) {
        ++pass;
      } else if (r.action == Action::kBlock) {
        ++block;
      } else {
        ++alert;
      }
    }
    std::string s = std::to_string(rules_->rules().size()) + " rules (" + std::to_string(alert) +
                    " alert, " + std::to_string(block) + " drop/reject, " + std::to_string(pass) +
                    " pass)";
    for (int f = 0; f < 2; ++f) {
      const hs_database_t* db = rules_->database(static_cast<Flow>(f));
      std::size_t bytes = 0;
      if (db != nullptr) hs_database_size(db, &bytes);
      s += f == 0 ? ", to_server db " : ", to_client db ";
      s += db != nullptr ? std::to_string(bytes) + " B" : "none";
    }
    s += ", window " + std::to_string(rules_->options().window_bytes) + " B";
    return s;
  }

 private:
  std::shared_ptr<const CompiledRules> rules_;
  hs_scratch_t* prototype_;
  std::mutex mu_;
};

}  // namespace

rpc::Result<std::unique_ptr<Engine>> make_ids_engine(const EngineConfig& config) {
  auto options = parse_options(config.options);
  if (!options) return options.error();
  if (config.rules_path.empty()) return rpc::Error{EINVAL, "ids: rules_path is empty"};
  auto rules = ids::load_ids_rules(config.rules_path);
  if (!rules) return rules.error();
  auto compiled = CompiledRules::build(std::move(*rules), *options);
  if (!compiled) return compiled.error();
  hs_scratch_t* prototype = nullptr;
  for (int f = 0; f < 2; ++f) {
    const hs_database_t* db = (*compiled)->database(static_cast<Flow>(f));
    if (db == nullptr) continue;
    // One prototype sized for both databases; threads clone it.
    if (const hs_error_t rc = hs_alloc_scratch(db, &prototype); rc != HS_SUCCESS) {
      hs_free_scratch(prototype);
      return rpc::Error{ENOMEM, "ids: hs_alloc_scratch failed (" + std::to_string(rc) + ")"};
    }
  }
  return std::unique_ptr<Engine>(std::make_unique<IdsEngine>(std::move(*compiled), prototype));
}

}  // namespace tosec::svm
