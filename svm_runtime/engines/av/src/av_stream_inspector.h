// The av engine's inspector for scan=window and scan=object: one DirectionScanner per direction.
// In object mode an object is complete when the other direction starts talking (request done
// when the response starts, and the reverse) or at finish().
#pragma once

#include <array>
#include <memory>

#include "av_shared.h"
#include "direction_scanner.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::av {

class AvStreamInspector final : public StreamInspector {
 public:
  AvStreamInspector(std::shared_ptr<const AvShared> shared, std::shared_ptr<ScanScratch> scratch);

  Verdict inspect(const Payload& payload) override;
  Verdict finish() override;

 private:
  std::shared_ptr<const AvShared> shared_;
  std::shared_ptr<ScanScratch> scratch_;
  std::array<DirectionScanner, 2> dirs_;  // indexed by Direction
};

}  // namespace tosec::svm::av
