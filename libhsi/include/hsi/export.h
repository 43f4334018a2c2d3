// hsi/export.h: HSI_EXPORT marks the public API of libhsi.so.
//
// libhsi is built with -fvisibility=hidden: only what is marked here is
// exported from the shared library (`nm -D --defined-only libhsi.so`);
// internal code, and the abseil and liburing code instantiated in it, stays
// private.
#ifndef HSI_EXPORT_H_
#define HSI_EXPORT_H_

#define HSI_EXPORT __attribute__((visibility("default")))
// For a class nested in an exported one that is not API (a pimpl's State):
// nested classes inherit their enclosing class's visibility.
#define HSI_LOCAL __attribute__((visibility("hidden")))

#endif  // HSI_EXPORT_H_
