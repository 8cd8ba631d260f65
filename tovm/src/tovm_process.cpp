#include "tosec/tovm/tovm_process.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <latch>
#include <string>
#include <system_error>

#include "tosec/rpc/cpu_list.h"

namespace tosec::tovm {

namespace {

cpu_set_t one_cpu(unsigned cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return set;
}

// The kernel is the judge of which CPUs this process may use (online, inside its cpuset): try
// each one on the calling thread, and leave it on worker 0's.
rpc::Status check_and_pin(const std::vector<unsigned>& cpus) {
  for (unsigned cpu : cpus) {
    const cpu_set_t set = one_cpu(cpu);
    if (::sched_setaffinity(0, sizeof set, &set) != 0) {
      const int err = errno;
      return rpc::Error{
          err, "--cpus: cannot run on CPU " + std::to_string(cpu) + ": " + std::strerror(err) +
                   (err == EINVAL ? " (offline, or outside this process's cpuset)" : "")};
    }
  }
  const cpu_set_t set = one_cpu(rpc::cpu_for(0, cpus));
  if (::sched_setaffinity(0, sizeof set, &set) != 0) return rpc::errno_error("sched_setaffinity");
  return {};
}

}  // namespace

rpc::Result<std::unique_ptr<TovmProcess>> TovmProcess::create(const TovmCommandLine& cl) {
  if (cl.guests.empty()) return rpc::Error{EINVAL, "no guest to serve"};
  const unsigned w = std::clamp<unsigned>(cl.workers, 1U, static_cast<unsigned>(cl.guests.size()));
  std::vector<std::vector<TovmOptions>> assigned(w);
  for (std::size_t i = 0; i < cl.guests.size(); ++i) {
    assigned[worker_of(i, w)].push_back(cl.guests[i]);
  }
  std::unique_ptr<TovmProcess> p(new TovmProcess());
  p->cpus_ = cl.cpus;
  if (!cl.cpus.empty()) {
    if (auto s = check_and_pin(cl.cpus); !s) return s.error();
  }
  for (unsigned i = 0; i < w; ++i) {
    auto worker = Worker::create(assigned[i], i, /*use_signalfd=*/i == 0);
    if (!worker) return worker.error();
    p->workers_.push_back(std::move(*worker));
  }
  // SIGHUP reaches worker 0 (the signalfd); it reloads its sessions and asks the others to
  // reload theirs on their own threads.
  TovmProcess* self = p.get();
  p->workers_.front()->set_on_hangup([self] {
    for (std::size_t i = 1; i < self->workers_.size(); ++i) self->workers_[i]->request_reload();
  });
  return p;
}

// Worker 0 runs on the thread that called run(), which has returned by now.
TovmProcess::~TovmProcess() { stop_and_join_others(); }

rpc::Status TovmProcess::run(const std::function<void()>& on_started) {
  // Each thread pins itself before it serves anything, and on_started waits for all of them:
  // after "ready" every status answer names the worker's own CPU and /proc shows it pinned.
  // (Pinning from here after the thread starts left a window where worker i ran, and answered,
  // on worker 0's CPU.)
  const std::size_t others = workers_.size() - 1;
  std::latch pinned(static_cast<std::ptrdiff_t>(others));
  threads_.reserve(others);
  try {
    for (std::size_t i = 1; i < workers_.size(); ++i) {
      Worker* w = workers_[i].get();
      const bool pin = !cpus_.empty();
      const unsigned cpu = pin ? rpc::cpu_for(i, cpus_) : 0;
      threads_.emplace_back([w, i, pin, cpu, &pinned] {
        if (pin) {
          // Checked in create(): a refusal now means the cpuset changed under us; run unpinned.
          const cpu_set_t set = one_cpu(cpu);
          if (const int err = ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set);
              err != 0) {
            std::fprintf(stderr, "tosec-tovm: worker %zu stays unpinned: CPU %u: %s\n", i, cpu,
                         std::strerror(err));
          }
        }
        pinned.count_down();  // last use of `pinned`: run() waits for it below
        (void)w->run();
      });
    }
  } catch (const std::system_error& e) {  // no thread left (RLIMIT_NPROC, memory)
    pinned.count_down(static_cast<std::ptrdiff_t>(others - threads_.size()));
    pinned.wait();  // the started threads are done with `pinned` before it goes
    stop_and_join_others();
    return rpc::Error{e.code().value(), std::string("cannot start a worker thread: ") + e.what()};
  }
  pinned.wait();
  if (on_started) on_started();
  auto s = workers_.front()->run();
  stop_and_join_others();
  return s;
}

void TovmProcess::stop_and_join_others() {
  for (std::size_t i = 1; i < workers_.size(); ++i) workers_[i]->request_stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace tosec::tovm
