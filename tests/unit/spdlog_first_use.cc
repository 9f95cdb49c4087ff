// Linked into every unit test binary: builds spdlog's registry (its default logger, sink and
// formatter) on the main thread, before main() and before any test starts a thread.
//
// The registry is a function-local static inside libspdlog. Its first use from two threads
// is safe, but the guard that orders it is checked in uninstrumented code, so under
// ThreadSanitizer (make tsan) a test thread that logs first (an informer's first relist)
// and a thread that logs next look unordered with each other. Built here, before any thread
// exists, every later use is ordered after it by the thread's creation.
#include "spdlog/spdlog.h"

namespace {

[[maybe_unused]] const bool kRegistryBuilt = spdlog::default_logger_raw() != nullptr;

}  // namespace
