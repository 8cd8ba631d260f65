// make_av_engine(): the Engine / EngineThread layers of the av engine. Everything per stream is
// in av_stream_inspector.cpp; everything libclamav in clamav_database.cpp.
#include <memory>
#include <string>

#include "av_options.h"
#include "av_shared.h"
#include "av_stream_inspector.h"
#include "clamav_database.h"
#include "tosec/svm/engines/av.h"
#if TOSEC_AV_WITH_HTTP
#include "av_http_inspector.h"
#include "tosec/svm/engines/http_stream.h"
#endif

namespace tosec::svm {
namespace {

using av::AvShared;
using av::ScanScratch;

#if TOSEC_AV_WITH_HTTP
using HttpConfig = std::shared_ptr<const http::HttpParserConfig>;
#else
using HttpConfig = std::shared_ptr<const void>;  // never set: no scan=http in this build
#endif

class AvThread final : public EngineThread {
 public:
  AvThread(std::shared_ptr<const AvShared> shared, HttpConfig http_config)
      : shared_(std::move(shared)),
        http_config_(std::move(http_config)),
        scratch_(std::make_shared<ScanScratch>()) {}

  std::unique_ptr<StreamInspector> open_stream([[maybe_unused]] const StreamInfo& info) override {
#if TOSEC_AV_WITH_HTTP
    if (shared_->options.scan == av::ScanMode::kHttp) {
      return std::make_unique<av::AvHttpInspector>(shared_, scratch_, http_config_, info);
    }
#endif
    return std::make_unique<av::AvStreamInspector>(shared_, scratch_);
  }

 private:
  std::shared_ptr<const AvShared> shared_;
  HttpConfig http_config_;
  // Shared by this thread's inspectors only (they run on this thread, one inspect() at a time).
  std::shared_ptr<ScanScratch> scratch_;
};

class AvEngine final : public Engine {
 public:
  AvEngine(std::shared_ptr<const AvShared> shared, HttpConfig http_config)
      : shared_(std::move(shared)), http_config_(std::move(http_config)) {}

  std::string_view kind() const override { return "av"; }

  rpc::Result<std::unique_ptr<EngineThread>> make_thread() override {
    return std::unique_ptr<EngineThread>(std::make_unique<AvThread>(shared_, http_config_));
  }

  std::string summary() const override {
    const av::AvOptions& o = shared_->options;
    std::string s = std::to_string(shared_->db->signatures()) + " signatures from " +
                    std::to_string(shared_->db->files()) + " file(s), scan=";
    if (o.scan == av::ScanMode::kWindow) {
      s += "window overlap=" + std::to_string(o.overlap_bytes);
    } else {
      s += (o.scan == av::ScanMode::kHttp ? "http" : "object");
      s += " max_object_bytes=" + std::to_string(o.max_object_bytes);
    }
    s += o.on_virus == Action::kBlock ? ", mode=block" : ", mode=detect";
    return s;
  }

 private:
  std::shared_ptr<const AvShared> shared_;
  HttpConfig http_config_;
};

}  // namespace

rpc::Result<std::unique_ptr<Engine>> make_av_engine(const EngineConfig& config) {
  auto options = av::parse_av_options(config.options);
  if (!options) return options.error();
  if (config.rules_path.empty()) {
    return rpc::Error{EINVAL, "av engine '" + config.svm_name + "': rules_path is empty"};
  }
  auto db = av::ClamDatabase::load(config.rules_path, *options);
  if (!db) return db.error();
  HttpConfig http_config;
#if TOSEC_AV_WITH_HTTP
  if (options->scan == av::ScanMode::kHttp) {
    auto cfg = http::HttpParserConfig::create();
    if (!cfg) return cfg.error();
    http_config = std::move(*cfg);
  }
#endif
  auto shared = std::make_shared<AvShared>(AvShared{std::move(*options), std::move(*db)});
  return std::unique_ptr<Engine>(
      std::make_unique<AvEngine>(std::move(shared), std::move(http_config)));
}

}  // namespace tosec::svm
