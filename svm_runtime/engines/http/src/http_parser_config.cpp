// Builds the shared libhtp configuration (personality, limits, decompression, our hooks).
#include <htp/htp.h>

#include <cerrno>

#include "htp_glue.h"
#include "tosec/svm/engines/http_stream.h"

namespace tosec::svm::http {
namespace {

htp_server_personality_t to_htp(Personality p) {
  switch (p) {
    case Personality::kApache2:
      return HTP_SERVER_APACHE_2;
    case Personality::kIis7:
      return HTP_SERVER_IIS_7_0;
    case Personality::kMinimal:
      return HTP_SERVER_MINIMAL;
    case Personality::kIds:
      break;
  }
  return HTP_SERVER_IDS;
}

}  // namespace

rpc::Result<std::shared_ptr<const HttpParserConfig>> HttpParserConfig::create(
    const HttpParserOptions& options) {
  if (options.field_soft_limit > options.field_hard_limit) {
    return rpc::Error{EINVAL,
                      "http parser: field_soft_limit " + std::to_string(options.field_soft_limit) +
                          " exceeds field_hard_limit " + std::to_string(options.field_hard_limit)};
  }
  htp_cfg_t* cfg = htp_config_create();
  if (cfg == nullptr) return rpc::Error{ENOMEM, "http parser: htp_config_create failed"};
  if (htp_config_set_server_personality(cfg, to_htp(options.personality)) != HTP_OK) {
    htp_config_destroy(cfg);
    return rpc::Error{EINVAL, "http parser: libhtp rejected the server personality"};
  }
  htp_config_set_field_limits(cfg, options.field_soft_limit, options.field_hard_limit);
  htp_config_set_response_decompression(cfg, options.decompress_responses ? 1 : 0);
  htp_config_set_request_decompression(cfg, options.decompress_requests ? 1 : 0);
  // Completed transactions are freed by libhtp as soon as both halves are done, so a long
  // keep-alive connection does not accumulate them.
  htp_config_set_tx_auto_destroy(cfg, 1);
  // libhtp keeps every logged message for the connection's life: only keep what we report.
  htp_config_set_log_level(cfg, options.report_warnings ? HTP_LOG_WARNING : HTP_LOG_ERROR);
  detail::register_hooks(cfg);
  return std::shared_ptr<const HttpParserConfig>(new HttpParserConfig(options, cfg));
}

HttpParserConfig::~HttpParserConfig() { htp_config_destroy(static_cast<htp_cfg_t*>(cfg_)); }

}  // namespace tosec::svm::http
