#include "clamav_database.h"

#include <clamav.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <vector>

#include "clamav_library.h"

namespace tosec::svm::av {
namespace {

namespace fs = std::filesystem;

// The extensions libclamav's own directory loader accepts (CLI_DBEXT in libclamav/readdb.h);
// anything else in a rules directory (README, .orig, editor backups) is skipped.
bool is_signature_file(const fs::path& p) {
  static const std::set<std::string> kExtensions = {
      ".db",  ".hdb", ".hdu", ".hsb",  ".hsu",  ".mdb", ".mdu",  ".msb", ".msu", ".ndb",
      ".ndu", ".ldb", ".ldu", ".sdb",  ".zmd",  ".rmd", ".idb",  ".fp",  ".sfp", ".gdb",
      ".pdb", ".wdb", ".cbc", ".ftm",  ".cfg",  ".cvd", ".cld",  ".cud", ".cdb", ".cat",
      ".crb", ".ioc", ".yar", ".yara", ".pwdb", ".ign", ".ign2", ".info"};
  return kExtensions.contains(p.extension().string());
}

rpc::Result<std::vector<fs::path>> signature_files(const std::string& rules_path) {
  std::error_code ec;
  const fs::file_status st = fs::status(rules_path, ec);
  if (ec || !fs::exists(st)) {
    return rpc::Error{ENOENT, "av rules '" + rules_path + "': no such file or directory"};
  }
  if (!fs::is_directory(st)) return std::vector<fs::path>{fs::path(rules_path)};
  std::vector<fs::path> files;
  for (fs::directory_iterator it(rules_path, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec) && is_signature_file(it->path())) files.push_back(it->path());
  }
  if (ec) return rpc::Error{ec.value(), "av rules '" + rules_path + "': " + ec.message()};
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    return rpc::Error{ENOENT, "av rules '" + rules_path +
                                  "': no signature files (.ndb .hdb .ldb .yar ...) in directory"};
  }
  return files;
}

rpc::Error clam_error(const std::string& what, cl_error_t code, const std::string& detail) {
  std::string msg = what + ": " + cl_strerror(code);
  if (!detail.empty()) msg += " (" + detail + ")";
  return rpc::Error{EINVAL, std::move(msg)};
}

}  // namespace

rpc::Result<std::unique_ptr<ClamDatabase>> ClamDatabase::load(const std::string& rules_path,
                                                              const AvOptions& options) {
  if (auto st = init_clamav_once(); !st) return st.error();
  auto files = signature_files(rules_path);
  if (!files) return files.error();
  auto tmpdir = ScanTmpdir::acquire(options.tmpdir_base);
  if (!tmpdir) return tmpdir.error();

  std::unique_ptr<ClamDatabase> db(new ClamDatabase());
  db->tmpdir_ = std::move(*tmpdir);
  db->engine_ = cl_engine_new();
  if (db->engine_ == nullptr) return rpc::Error{ENOMEM, "av: cl_engine_new failed"};

  const struct {
    cl_engine_field field;
    long long value;
    const char* name;
  } numbers[] = {
      {CL_ENGINE_MAX_FILESIZE, static_cast<long long>(options.max_filesize), "max_filesize"},
      {CL_ENGINE_MAX_SCANSIZE, static_cast<long long>(options.max_scansize), "max_scansize"},
      {CL_ENGINE_MAX_SCANTIME, options.max_scantime_ms, "max_scantime_ms"},
      {CL_ENGINE_DISABLE_CACHE, options.cache ? 0 : 1, "cache"},
  };
  for (const auto& n : numbers) {
    if (cl_error_t r = cl_engine_set_num(db->engine_, n.field, n.value); r != CL_SUCCESS) {
      return clam_error(std::string("av: setting ") + n.name, r, "");
    }
  }
  if (cl_error_t r = cl_engine_set_str(db->engine_, CL_ENGINE_TMPDIR, db->tmpdir_->path().c_str());
      r != CL_SUCCESS) {
    return clam_error("av: setting tmpdir " + db->tmpdir_->path(), r, "");
  }

  for (const fs::path& file : *files) {
    std::string detail;
    unsigned before = db->signatures_;
    cl_error_t r;
    {
      ClamMessageCapture capture(&detail);
      r = cl_load(file.c_str(), db->engine_, &db->signatures_, CL_DB_STDOPT);
    }
    if (r != CL_SUCCESS) return clam_error("av rules '" + file.string() + "'", r, detail);
    if (db->signatures_ == before) {
      return rpc::Error{EINVAL, "av rules '" + file.string() + "': no signatures in file"};
    }
    ++db->files_;
  }
  {
    std::string detail;
    ClamMessageCapture capture(&detail);
    if (cl_error_t r = cl_engine_compile(db->engine_); r != CL_SUCCESS) {
      return clam_error("av rules '" + rules_path + "': compile", r, detail);
    }
  }
  db->parse_ = options.all_parsers ? ~0u : 0u;
  return db;
}

ClamDatabase::~ClamDatabase() {
  if (engine_ != nullptr) cl_engine_free(engine_);
}

ScanOutcome ClamDatabase::scan(std::span<const std::byte> object) const {
  cl_scan_options scan_options{};
  scan_options.parse = parse_;
  cl_fmap_t* map = cl_fmap_open_memory(object.data(), object.size());
  if (map == nullptr) return {ScanOutcome::Kind::kError, nullptr, cl_strerror(CL_EMEM)};
  const char* virname = nullptr;
  unsigned long scanned = 0;
  std::string logged;  // stays empty (no allocation) unless libclamav logs a warning or error
  cl_error_t r;
  {
    ClamMessageCapture capture(&logged, /*errors_only=*/true);
    r = cl_scanmap_callback(map, nullptr, &virname, &scanned, engine_, &scan_options, nullptr);
  }
  cl_fmap_close(map);
  if (r == CL_VIRUS) return {ScanOutcome::Kind::kVirus, virname, {}};
  if (r == CL_CLEAN && logged.empty()) return {};
  std::string error = r == CL_CLEAN ? "libclamav error" : cl_strerror(r);
  if (!logged.empty()) error += " (" + logged + ")";
  return {ScanOutcome::Kind::kError, nullptr, std::move(error)};
}

}  // namespace tosec::svm::av
