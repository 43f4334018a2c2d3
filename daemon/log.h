// daemon/log.h: hsid's log, one line per event on stderr ("hsid: ...").
//
// The lines are part of hsid's behaviour: operators read them and tests
// grep them, so a line's words change only on purpose.
//
// Thread safety: one fprintf per line; hsid is single-threaded anyway.
#ifndef HSI_DAEMON_LOG_H_
#define HSI_DAEMON_LOG_H_

#include <cstdio>
#include <string>

namespace hsid {

inline void Log(const std::string& line) { std::fprintf(stderr, "hsid: %s\n", line.c_str()); }

}  // namespace hsid

#endif  // HSI_DAEMON_LOG_H_
