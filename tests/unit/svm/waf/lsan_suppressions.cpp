// LeakSanitizer suppressions for the WAF tests (read by the ASan runtime; unused otherwise).
//
// libmodsecurity 3.0.9 leaks the VariableValue copies made by
// InMemoryPerProcess::resolveMultiMatches on some inputs (owasp-modsecurity/ModSecurity issue
// #1398, still open; PR #2520). The fuzz test reaches it with mutated requests. The leak is inside
// the library, so only that frame is suppressed: any leak of ours still fails the tests.
extern "C" const char* __lsan_default_suppressions();
extern "C" const char* __lsan_default_suppressions() {
  return "leak:modsecurity::collection::backend::InMemoryPerProcess::resolveMultiMatches\n";
}
