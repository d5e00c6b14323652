// File: tests/fuzz/fuzz_target.h
//
// Each fuzz target defines LLVMFuzzerTestOneInput and fuzz_seeds(). The same source builds two
// ways: as a libFuzzer binary (SYNCD_BUILD_FUZZERS, clang), and linked with regression_main.cpp
// as a CTest test that replays tests/fuzz/corpus/<target>/ plus the generated seeds, so every
// input that once crashed stays a test in every build (zstd's regression driver).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lib/base/bytes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// Valid and near-valid inputs built with our own encoders: the fuzzer's starting corpus.
std::vector<syncd::Bytes> fuzz_seeds();
