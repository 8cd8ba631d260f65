// The "av" engine: ClamAV (libclamav 1.4.6) signature scanning of guest byte streams.
//
// libclamav scans whole objects, not streams. The engine bridges the two per stream direction
// (docs/engines/av.md):
//   scan = window (default)  each payload is scanned together with the last `overlap_bytes` of
//                            that direction, so a body signature split across payloads is found;
//                            cost is linear in bytes, memory per stream is 2 x overlap.
//   scan = object            bytes are accumulated up to `max_object_bytes` and the whole object is
//                            scanned when it looks complete (the peer answers, or the stream ends),
//                            so container formats (zip, gzip, PDF, ...) are unpacked and hashed.
//   scan = http              HTTP/1.x request and response bodies (de-chunked, inflated) are the
//                            objects, scanned on the payload that completes them; non-HTTP
//                            directions fall back to window. Only when built with tosec_svm_http
//                            (TOSEC_AV_WITH_HTTP is 1); otherwise scan=http is a load error.
//
// Options (EngineConfig::options, all optional):
//   mode              block | detect          a detection blocks (default) or only alerts
//   scan              window | object | http
//   overlap_bytes     default 4096; must be >= the longest body signature
//   max_object_bytes  default 4 MiB (object and http mode)
//   over_limit        alert | block           an object larger than max_object_bytes (default
//   alert) parsers           all | raw               libclamav file parsers (default: raw in window
//   mode,
//                                             all in object mode)
//   cache             on | off                libclamav's clean-MD5 cache (default: off in window
//                                             mode, on in object mode)
//   max_filesize, max_scansize (bytes), max_scantime_ms, tmpdir (base directory, default /dev/shm)
//
// rules_path is a signature file (.ndb .hdb .ldb .yar ...) or a directory of them; a load error
// names the file and libclamav's reason. The Engine is immutable after load and shared by threads.
#pragma once

#include <memory>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm {

rpc::Result<std::unique_ptr<Engine>> make_av_engine(const EngineConfig& config);

}  // namespace tosec::svm
