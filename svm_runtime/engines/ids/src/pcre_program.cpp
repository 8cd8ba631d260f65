#include "pcre_program.h"

namespace tosec::svm::ids {

rpc::Result<std::shared_ptr<const PcreProgram>> PcreProgram::compile(const std::string& pattern,
                                                                     PcreFlags flags) {
  std::uint32_t options = 0;
  if (flags.caseless) options |= PCRE2_CASELESS;
  if (flags.dotall) options |= PCRE2_DOTALL;
  if (flags.multiline) options |= PCRE2_MULTILINE;
  if (flags.extended) options |= PCRE2_EXTENDED;
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &error, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(error, buf, sizeof buf);
    return rpc::Error{EINVAL, std::string(reinterpret_cast<const char*>(buf)) + " at offset " +
                                  std::to_string(error_offset)};
  }
  // JIT is an optimisation: a pattern it cannot take still runs in the interpreter.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return std::shared_ptr<const PcreProgram>(new PcreProgram(code));
}

PcreProgram::~PcreProgram() { pcre2_code_free(code_); }

rpc::Result<std::unique_ptr<PcreThreadState>> PcreThreadState::create(std::uint32_t match_limit) {
  std::unique_ptr<PcreThreadState> s(new PcreThreadState());
  // Only the overall match bounds are read, so one ovector pair is enough.
  s->match_data_ = pcre2_match_data_create(1, nullptr);
  s->context_ = pcre2_match_context_create(nullptr);
  s->jit_stack_ = pcre2_jit_stack_create(32 * 1024, 512 * 1024, nullptr);
  if (s->match_data_ == nullptr || s->context_ == nullptr || s->jit_stack_ == nullptr) {
    return rpc::Error{ENOMEM, "pcre2: cannot allocate match data, context or JIT stack"};
  }
  pcre2_jit_stack_assign(s->context_, nullptr, s->jit_stack_);
  pcre2_set_match_limit(s->context_, match_limit);
  return s;
}

PcreThreadState::~PcreThreadState() {
  pcre2_match_data_free(match_data_);
  pcre2_match_context_free(context_);
  pcre2_jit_stack_free(jit_stack_);
}

PcreThreadState::Match PcreThreadState::find(const PcreProgram& program,
                                             const std::uint8_t* subject, std::size_t size,
                                             std::size_t from, bool not_bol, bool not_eol) {
  std::uint32_t options = 0;
  if (not_bol) options |= PCRE2_NOTBOL;
  if (not_eol) options |= PCRE2_NOTEOL;
  // An empty window still needs a valid pointer for PCRE2.
  static const std::uint8_t kEmpty = 0;
  const int rc = pcre2_match(program.code(), size == 0 ? &kEmpty : subject, size, from, options,
                             match_data_, context_);
  if (rc < 0) return {};
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match_data_);
  return Match{true, ov[0], ov[1]};
}

}  // namespace tosec::svm::ids
