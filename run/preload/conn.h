// run/preload/conn.h: libhsi-run.so's state: the options, the real libc
// functions, the per-process table of descriptors, and Conn, one
// accelerated TCP connection (docs/hsi-run.md).
//
// A Conn lives in its own MAP_SHARED anonymous mapping, so that after a
// fork parent and child share it (the rings' mappings are inherited at the
// same addresses): one ring position, one partial-frame offset, one set of
// locks for every process that holds the connection. Its locks are
// process-shared robust mutexes (a holder's death is recovered from). It
// holds no descriptor of its own: only the program's socket.
//
// The fd table maps a descriptor number to its Conn in this process; it is
// read without a lock on the data path (acquire loads), written under
// g_table_mu. `Local` counts, per Conn, this process's descriptors for it;
// Conn::refs counts every process's (incremented at fork for each inherited
// descriptor, at dup; decremented at close and, for descriptors an exec will
// close, at exec).
//
// Thread safety: as stated per item.
#ifndef HSI_RUN_PRELOAD_CONN_H_
#define HSI_RUN_PRELOAD_CONN_H_

#include <pthread.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "hsi/ring.h"
#include "hsi/run_broker.h"
#include "hsi/segment.h"
#include "hsi/stream.h"

namespace hsirun {

// ------------------------------------------------------------ options

struct Options {
  bool disabled = false;        // HSI_RUN_DISABLE=1: pass everything through
  std::string socket;           // HSI_RUN_SOCKET, else libhsi's default (HSI_SOCKET, ...)
  int log = 0;                  // HSI_RUN_LOG: 0 quiet, 1 each connection's decision, 2 more
  uint32_t busy_poll_us = 0;    // HSI_RUN_BUSY_POLL_US: spin this long before sleeping
  uint64_t ring_bytes = 1 << 20;  // HSI_RUN_RING_KB: ring capacity per direction
  uint32_t pair_timeout_ms = 1000;  // HSI_RUN_PAIR_TIMEOUT_MS: connector waits for the accept
  std::vector<uint16_t> ports;          // HSI_RUN_PORTS: only these (empty: all)
  std::vector<uint16_t> exclude_ports;  // HSI_RUN_EXCLUDE_PORTS: never these
  hsi::RingGeometry geometry() const;
  bool PortAllowed(uint16_t port) const;
};
const Options& Opts();
// One line on stderr, "hsi-run[pid]: ...", when HSI_RUN_LOG >= level.
void Logf(int level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// ------------------------------------------------------------ real libc

struct Real {
  int (*socket)(int, int, int);
  int (*connect)(int, const sockaddr*, socklen_t);
  int (*listen)(int, int);
  int (*accept)(int, sockaddr*, socklen_t*);
  int (*accept4)(int, sockaddr*, socklen_t*, int);
  int (*close)(int);
  int (*shutdown)(int, int);
  int (*dup)(int);
  int (*dup2)(int, int);
  int (*dup3)(int, int, int);
  int (*fcntl)(int, int, ...);
  int (*ioctl)(int, unsigned long, ...);
  int (*setsockopt)(int, int, int, const void*, socklen_t);
  ssize_t (*read)(int, void*, size_t);
  ssize_t (*write)(int, const void*, size_t);
  ssize_t (*readv)(int, const iovec*, int);
  ssize_t (*writev)(int, const iovec*, int);
  ssize_t (*recv)(int, void*, size_t, int);
  ssize_t (*send)(int, const void*, size_t, int);
  ssize_t (*recvfrom)(int, void*, size_t, int, sockaddr*, socklen_t*);
  ssize_t (*sendto)(int, const void*, size_t, int, const sockaddr*, socklen_t);
  ssize_t (*recvmsg)(int, msghdr*, int);
  ssize_t (*sendmsg)(int, const msghdr*, int);
  int (*recvmmsg)(int, struct mmsghdr*, unsigned, int, struct timespec*);
  int (*sendmmsg)(int, struct mmsghdr*, unsigned, int);
  ssize_t (*sendfile)(int, int, off_t*, size_t);
  ssize_t (*splice)(int, loff_t*, int, loff_t*, size_t, unsigned);
  int (*close_range)(unsigned, unsigned, int);
  int (*execve)(const char*, char* const[], char* const[]);
  int (*execvpe)(const char*, char* const[], char* const[]);
  int (*fexecve)(int, char* const[], char* const[]);
  int (*execveat)(int, const char*, char* const[], char* const[], int);
  int (*posix_spawn)(pid_t*, const char*, const posix_spawn_file_actions_t*, const posix_spawnattr_t*, char* const[],
                     char* const[]);
  int (*posix_spawnp)(pid_t*, const char*, const posix_spawn_file_actions_t*, const posix_spawnattr_t*, char* const[],
                      char* const[]);
  int (*posix_spawn_file_actions_adddup2)(posix_spawn_file_actions_t*, int, int);
  int (*posix_spawn_file_actions_addclose)(posix_spawn_file_actions_t*, int);
  int (*system)(const char*);
  FILE* (*popen)(const char*, const char*);
  int (*epoll_ctl)(int, int, int, struct epoll_event*);
  int (*epoll_wait)(int, struct epoll_event*, int, int);
  int (*epoll_pwait)(int, struct epoll_event*, int, int, const sigset_t*);
  int (*epoll_pwait2)(int, struct epoll_event*, int, const struct timespec*, const sigset_t*);
  int (*poll)(struct pollfd*, unsigned long, int);
  int (*ppoll)(struct pollfd*, unsigned long, const struct timespec*, const sigset_t*);
  int (*select)(int, fd_set*, fd_set*, fd_set*, struct timeval*);
  int (*pselect)(int, fd_set*, fd_set*, fd_set*, const struct timespec*, const sigset_t*);
};
const Real& R();

// ------------------------------------------------------------ connections

// kPending: a connector proposed, not yet paired (nothing sent in-band);
// kActive: on rings; kPlain: fell back, plain TCP; kBroken: paired at hsid
// but unusable here (a bad peer segment): reads and writes fail ECONNRESET.
enum class State : int { kPending = 0, kActive = 1, kPlain = 2, kBroken = 3 };

struct Conn {
  std::atomic<int> state;  // State
  uint32_t side = 0;       // 0 connector, 1 acceptor
  uint64_t stream_id = 0;
  std::atomic<int> refs;   // descriptors for it, in every process
  std::atomic<bool> nonblock;  // O_NONBLOCK of the open file (shared by dups and forks)
  std::atomic<bool> shut_wr;
  std::atomic<uint32_t> writes;  // for the periodic peer-gone check
  std::atomic<bool> forked_pending;  // a fork shared it before it paired
  // Readers arm whenever they empty the ring, not only before they sleep
  // (wait.cc): set, for good, when the library cannot see every sleeper
  // (held by two processes after a fork, EPOLLONESHOT, O_ASYNC, a dup left
  // in an epoll set). Relaxed: it only adds arms.
  std::atomic<bool> eager;
  // Waits (and blocking reads) sleeping on it now, in every process: a wait
  // arms with its own waiter id (one bell per wait, hsi/stream.h) only when
  // it is the only one and the connection is not eager.
  std::atomic<int> sleepers;
  // A wait saw the socket readable with the ring empty and no bell left
  // (the peer's FIN or reset, most likely): the next read that finds the
  // ring empty looks at the socket's end. Otherwise a non-blocking read
  // that finds nothing returns EAGAIN without a syscall, looking only
  // every 64th time (`quiet_reads`), for a program that never waits.
  std::atomic<bool> end_maybe;
  std::atomic<uint32_t> quiet_reads;
  // While the peer's image execs (its page says moving, FollowPeer): no
  // ask at hsid before `follow_at_ns` (CLOCK_MONOTONIC); each "not yet"
  // doubles `follow_pause_us` (20 us -> 2 ms), a switch resets both.
  // Relaxed: a lost update only moves one ask.
  std::atomic<uint64_t> follow_at_ns;
  std::atomic<uint32_t> follow_pause_us;
  pthread_mutex_t setup_mu, tx_mu, rx_mu;
  hsi::RingGeometry geometry;
  hsi::Segment own_ring, own_page;  // until paired (then inside `end`)
  hsi::StreamEnd end;              // valid once kActive
};

// A new Conn in its own shared mapping (refs 1); nullptr if mmap fails.
Conn* NewConn(uint32_t side, uint64_t stream_id, const hsi::RingGeometry& g);
// The last reference anywhere is gone: tells hsid, unmaps everything in
// this process (the object is never destroyed, only unmapped).
void DestroyConn(Conn* c);
// This process lets go while others keep it: unmaps its views only.
void ForgetConn(Conn* c);

// Locks a Conn mutex, recovering it if its holder died.
void Lock(pthread_mutex_t* mu);
inline void Unlock(pthread_mutex_t* mu) { pthread_mutex_unlock(mu); }
struct Guard {
  explicit Guard(pthread_mutex_t* mu) : mu_(mu) { Lock(mu_); }
  ~Guard() { Unlock(mu_); }
  pthread_mutex_t* mu_;
};

// The Conn of `fd` in this process, or nullptr (lock-free).
Conn* Lookup(int fd);
// Binds `fd` to `c` in this process (one more local and global reference
// unless `adopt_ref`, which takes over refs' initial 1).
void Attach(int fd, Conn* c, bool adopt_ref);
// Unbinds `fd`; drops the references; tears down on the last one. Returns
// whether `fd` had a Conn.
bool Detach(int fd);
// Whether another process (of a fork) holds a descriptor for `c` too.
bool HeldElsewhere(Conn* c);
// Whether listener `fd` is registered with hsid by this process.
bool IsListener(int fd);
void AddListener(int fd, uint64_t id);
void RemoveListener(int fd);

// The hsid connection, made on first use; nullptr (and the reason counted
// as no_hsid) when hsid does not answer. Callers hold BrokerLock().
hsi::RunBroker* Broker();
pthread_mutex_t* BrokerMu();
// This thread's id for its next wait (nonzero, random, never reused);
// renewed in a forked child.
uint64_t NextWaiterId();
void NewWaiterBase();

// Whether this process holds any accelerated connection (the waits' fast
// path; relaxed).
bool AnyConns();
// `fd` is being closed: forget it as an epoll set and as a member of one
// (wait.cc).
void ForgetWaitFd(int fd);

// Tells hsid of a fallback this process decided (best effort).
void ReportFallback(uint32_t reason);

// Per-thread: inside the library (our own socket calls pass through).
bool& InLib();
struct LibScope {
  LibScope() : was_(InLib()) { InLib() = true; }
  ~LibScope() { InLib() = was_; }
  bool was_;
};

uint64_t NowMs();  // CLOCK_MONOTONIC
// A connection just went onto rings: bells must not wait for Nagle (a bell
// held back behind the peer's delayed ACK costs 40 ms), so TCP_NODELAY.
void OnActive(int fd);

// Connector: pairs a kPending Conn (await the accept) or falls back.
// Returns the state after. Requires the socket to be connected.
State EnsurePaired(Conn* c, int fd);

// Whether this process's library state is another's: a vfork child (it
// shares the parent's memory) or a child of _Fork or clone (no fork handler
// ran). Its getpid() differs from the pid the constructor or the fork
// handler recorded. An exec from there carries nothing (setup.cc).
bool InForeignChild();

// Exec (setup.cc, docs/hsi-run.md section 5): the new image's constructor
// rebuilds the connections its old image carried (HSI_RUN_EXEC).
void ResumeAfterExec();

// The peer's image exec'd (its page says moving): asks hsid for its new
// segments and switches to them (io.cc). Called holding tx_mu if
// `tx_held`, else no lock of `c`; takes the rest (tx_mu before rx_mu).
// Asks at most once per Conn::follow_pause_us (kNotYet without asking
// before then) unless the socket holds a bell from the peer's new image,
// or `at_end`: the caller saw the socket's end, which must not be taken
// for the stream's before hsid was asked.
enum class Follow { kSwitched, kNotYet, kBroken };
Follow FollowPeer(Conn* c, int fd, bool tx_held, bool at_end = false);

// The data path (io.cc).
ssize_t ConnRead(Conn* c, int fd, const iovec* iov, int iovcnt, int flags);
ssize_t ConnWrite(Conn* c, int fd, const iovec* iov, int iovcnt, int flags);

}  // namespace hsirun

#endif  // HSI_RUN_PRELOAD_CONN_H_
