// PCRE2 (8-bit, JIT when available) for the post-match checks Hyperscan cannot do exactly.
// A compiled program is immutable and shared by all threads; each thread brings its own
// PcreThreadState (match data, JIT stack, limits), as PCRE2 requires.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "tosec/rpc/status.h"

namespace tosec::svm::ids {

struct PcreFlags {
  bool caseless = false;
  bool dotall = false;
  bool multiline = false;
  bool extended = false;
};

class PcreProgram {
 public:
  // Error message is bare ("missing closing parenthesis at offset 3").
  static rpc::Result<std::shared_ptr<const PcreProgram>> compile(const std::string& pattern,
                                                                 PcreFlags flags);
  ~PcreProgram();
  PcreProgram(const PcreProgram&) = delete;
  PcreProgram& operator=(const PcreProgram&) = delete;

  const pcre2_code* code() const { return code_; }

 private:
  explicit PcreProgram(pcre2_code* code) : code_(code) {}
  pcre2_code* code_;
};

class PcreThreadState {
 public:
  static rpc::Result<std::unique_ptr<PcreThreadState>> create(std::uint32_t match_limit);
  ~PcreThreadState();
  PcreThreadState(const PcreThreadState&) = delete;
  PcreThreadState& operator=(const PcreThreadState&) = delete;

  struct Match {
    bool found = false;
    std::size_t start = 0;  // within the subject
    std::size_t end = 0;
  };
  // Searches subject[from..]. not_bol / not_eol: the subject does not start / end the stream,
  // so ^ and $ must not match there. Errors (match limit, ...) count as "not found".
  Match find(const PcreProgram& program, const std::uint8_t* subject, std::size_t size,
             std::size_t from, bool not_bol, bool not_eol);

 private:
  PcreThreadState() = default;
  pcre2_match_data* match_data_ = nullptr;
  pcre2_match_context* context_ = nullptr;
  pcre2_jit_stack* jit_stack_ = nullptr;
};

}  // namespace tosec::svm::ids
