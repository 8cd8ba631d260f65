// fork/vfork/exec (decision 0004 points 4 and 7).
//
// fork: the child shares the parent's sockets (the kernel shares A) but must not use the
// parent's lane: the child drops the inherited platform (closing only its own copies of the
// ivshmem socket, eventfds and sidecar) and joins as a new peer on its next socket call. The
// prepare handler takes the lane locks so the child never inherits a half-updated lane.
// exec: nothing to do here; the new image finds its sockets by A's inode (fd_resolve.cpp).
#include <pthread.h>

#include "ops.h"
#include "platform.h"
#include "tosec/guest/tosec.h"

extern "C" {

void tosec_atfork_prepare(void) { tosec::guest::Platform::fork_prepare(); }
void tosec_atfork_parent(void) { tosec::guest::Platform::fork_parent(); }
void tosec_atfork_child(void) {
  ++tosec::guest::shim_depth();
  tosec::guest::Platform::drop_after_fork();
  --tosec::guest::shim_depth();
}

}  // extern "C"

namespace {
[[gnu::constructor]] void register_atfork() {
  pthread_atfork(tosec_atfork_prepare, tosec_atfork_parent, tosec_atfork_child);
}
}  // namespace
