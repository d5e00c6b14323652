// File: lib/runtime/resources.h
//
// What a node's status says about its footprint (DESIGN.md §11: memory per tracked file bounded
// and reported): the process's resident and peak memory, the live paths its index tracks (files, directories, links), the
// directories it watches, and resident memory per tracked file.
// Thread affinity: loop thread.
//
//   ResourceGauge g(index);
//   Resources r = g.read(watch_count);  text += "  " + resources_text(r) + "\n";
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "lib/store/index.h"

namespace syncd::runtime {

struct Resources {
  uint64_t rss_bytes = 0;       // VmRSS
  uint64_t peak_rss_bytes = 0;  // VmHWM
  std::optional<uint64_t> files;  // live records in the index; unknown until first counted
  uint64_t watches = 0;
};

// VmRSS and VmHWM of this process (zero where /proc cannot tell); files and watches unset.
Resources process_memory();

class ResourceGauge {
 public:
  explicit ResourceGauge(store::Index& index) : index_(index) {}
  // Counts files only when the store lock is free: a job may hold it for seconds (hashing a big
  // file), and a status query must not wait for that; the last count is given instead. Counted
  // again only after the index changed.
  Resources read(uint64_t watches);

 private:
  store::Index& index_;
  std::optional<uint64_t> files_;
  uint64_t counted_at_ = 0;  // the index's max_seq when files_ was counted
};

// "memory: 12.3 MiB resident (peak 40.1 MiB), 1200 paths tracked (10.5 KiB resident each), 35 directories watched"
std::string resources_text(const Resources& r);
// "\"memory\": {\"rss_bytes\": ..., \"peak_rss_bytes\": ..., \"files\": ..., \"watches\": ..., \"bytes_per_path\": ...}"
std::string resources_json(const Resources& r);

}  // namespace syncd::runtime
