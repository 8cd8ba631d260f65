// An empty shared object: the LD_PRELOAD of CLI tests that run with the fake TOE (the real shim
// would try to join a platform the fake cannot serve).
extern "C" int tosec_cli_test_preload_marker() { return 1; }
