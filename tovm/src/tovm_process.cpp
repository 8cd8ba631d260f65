#include "tosec/tovm/tovm_process.h"

#include <algorithm>

namespace tosec::tovm {

rpc::Result<std::unique_ptr<TovmProcess>> TovmProcess::create(const TovmCommandLine& cl) {
  if (cl.guests.empty()) return rpc::Error{EINVAL, "no guest to serve"};
  const unsigned w = std::clamp<unsigned>(cl.workers, 1U, static_cast<unsigned>(cl.guests.size()));
  std::vector<std::vector<TovmOptions>> assigned(w);
  for (std::size_t i = 0; i < cl.guests.size(); ++i) {
    assigned[worker_of(i, w)].push_back(cl.guests[i]);
  }
  std::unique_ptr<TovmProcess> p(new TovmProcess());
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

TovmProcess::~TovmProcess() {
  for (auto& w : workers_) w->request_stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

rpc::Status TovmProcess::run() {
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    Worker* w = workers_[i].get();
    threads_.emplace_back([w] { (void)w->run(); });
  }
  auto s = workers_.front()->run();
  for (std::size_t i = 1; i < workers_.size(); ++i) workers_[i]->request_stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  return s;
}

}  // namespace tosec::tovm
