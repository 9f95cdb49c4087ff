// Linked into the unit test binaries of the ThreadSanitizer build only (CMakeLists.txt,
// CAPSTAN_TSAN), and exported from them (--export-dynamic-symbol).
//
// std::shared_ptr's reference count is released by _Sp_counted_base<_S_atomic>::_M_release.
// Debian's libcpprest and libspdlog each carry GCC's uninstrumented copy of it, and their
// calls to it go through the PLT. Uninstrumented, the decrement that orders everything done
// with an object before its destruction is invisible, and TSan reports a race between any
// use of a cpprest object (a pplx task, an HTTP message) and its destruction on a cpprest
// thread. Emitting Capstan's instrumented copy here and exporting it from the executable
// makes the dynamic linker bind those libraries' calls to it, so TSan sees the ordering.
#include <memory>

namespace {

[[gnu::used]] const auto kInstrumentedRelease =
    &std::_Sp_counted_base<__gnu_cxx::_S_atomic>::_M_release;

}  // namespace
