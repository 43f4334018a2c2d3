// The precompiled header of every test binary (hsi_cc_test in
// HsiHelpers.cmake): the standard, absl and googletest headers most test
// files include, parsed once per build instead of once per test file. Only
// headers that never change with hsi's own code belong here (an hsi header
// would rebuild every test on each edit). A test file still includes what it
// uses; this header only makes that cheaper.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
