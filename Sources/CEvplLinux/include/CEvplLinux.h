// The few Linux facilities Swift cannot import directly: macros, packed
// structs and glibc inline helpers. Nothing else belongs here.
#ifndef CEVPL_LINUX_H
#define CEVPL_LINUX_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

/// Send flags for a non-blocking send that never raises SIGPIPE. (The glibc
/// enum constants are not visible to every Swift file once liburing's
/// headers have claimed <bits/socket.h>.)
static const int CEVPL_SEND_FLAGS = MSG_NOSIGNAL | MSG_DONTWAIT;

/// MSG_NOSIGNAL alone, for io_uring sends (io_uring does its own waiting).
static const int CEVPL_MSG_NOSIGNAL = MSG_NOSIGNAL;

/// fallocate modes (linux/falloc.h) and O_DIRECT, which glibc only names
/// under _GNU_SOURCE.
static const int CEVPL_FALLOC_KEEP_SIZE = 0x01;
static const int CEVPL_FALLOC_PUNCH_HOLE = 0x02;
static const int CEVPL_FALLOC_ZERO_RANGE = 0x10;
static const int CEVPL_O_DIRECT = 040000;

/// fallocate(2) (glibc declares it only under _GNU_SOURCE); 0 or -1 with errno set.
int cevpl_fallocate(int fd, int mode, int64_t offset, int64_t length);

/// preadv2(..., RWF_NOWAIT): reads only what the page cache holds without
/// blocking. Returns bytes read, or -errno (-EAGAIN when it would block).
long cevpl_preadv_nowait(int fd, const struct iovec *vectors, int count, int64_t offset);

/// openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: opens `path`
/// relative to the directory `dirfd` only if it resolves inside it (no `..`
/// above it, no absolute path, no symlink leading out). Returns the
/// descriptor, or -errno (-EXDEV for a path that leaves the directory,
/// -ENOSYS before Linux 5.6).
int cevpl_open_beneath(int dirfd, const char *path, int flags);

/// The kernel's limit on iovecs per readv/writev/sendmsg (UIO_MAXIOV).
static inline int cevpl_iov_max(void) { return 1024; }

/// Returns free heap memory to the kernel (glibc's `malloc_trim(0)`);
/// 1 when some was released.
int cevpl_malloc_trim(void);

/// Registers `fd` with epoll for `events`, carrying `token` back in each event.
int cevpl_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token);

/// Waits on epoll and unpacks the packed `struct epoll_event` array into
/// separate `events` and `tokens` arrays Swift can index.
/// `timeout_ns` < 0 waits forever; the wait has nanosecond resolution
/// (epoll_pwait2), falling back to milliseconds rounded up on old kernels.
int cevpl_epoll_wait(int epfd, uint32_t *events, uint64_t *tokens, int max, int64_t timeout_ns);

/// Pins the calling thread to the CPUs in `cpus`; returns 0 or an errno value.
int cevpl_set_affinity(const int *cpus, int count);

/// Number of CPUs the calling thread may run on, or -1 with errno set.
int cevpl_affinity_count(void);

/// The event loop that last ran an iteration on the calling thread (an
/// unretained Swift object), or NULL.
void *cevpl_current_loop(void);

/// Records `loop` as the calling thread's current event loop. When the
/// thread exits, `release` is called with the loop it last recorded.
void cevpl_set_current_loop(void *loop, void (*release)(void *));

/// Sets the calling thread's name (at most 15 bytes are kept).
void cevpl_set_thread_name(const char *name);

/// Sets the calling thread's timer slack (how late the kernel may fire its
/// timers, 50 us by default) to `nanoseconds`; returns 0 or -1 with errno.
int cevpl_set_timer_slack(unsigned long nanoseconds);

/// Blocks SIGINT and SIGTERM in the calling thread and returns a signalfd
/// that reports them, or -1 with errno set.
int cevpl_signalfd_for_termination(void);

/// CPU the calling thread is running on.
int cevpl_current_cpu(void);

/// Tries to create a one-entry io_uring; returns 0 when the kernel allows it,
/// otherwise the errno (ENOSYS: not built in, EPERM: disabled by sysctl).
int cevpl_io_uring_probe(void);

/// Sends `count` datagrams with one sendmmsg; `headers[i]` describes datagram
/// i. Returns how many were sent, or -1 with errno set.
int cevpl_sendmmsg(int fd, struct msghdr *headers, unsigned int count, int flags);

/// Receives up to two datagrams with one non-blocking recvmmsg: into
/// `first` (`first_length` bytes), then `second`. For each one received,
/// `lengths[i]` is its full length (larger than the space when it was cut:
/// MSG_TRUNC) and `senders[i]`/`sender_lengths[i]` its source. Returns how
/// many were received (fewer than two means the socket was drained), or -1
/// with errno set.
int cevpl_recv_two(int fd, void *first, size_t first_length, void *second, size_t second_length,
                   struct sockaddr_storage *senders, socklen_t *sender_lengths, size_t *lengths);

/// Accepts one connection as a non-blocking, close-on-exec socket.
int cevpl_accept(int fd, struct sockaddr *address, socklen_t *length);

/// The calling thread's system-call fault plan (an opaque, unretained
/// object pointer), or NULL: test builds consult it before each system call
/// the seam wraps. Swift has no thread-local storage of its own.
void *cevpl_thread_fault_plan(void);

/// Sets the calling thread's fault plan (NULL for none).
void cevpl_set_thread_fault_plan(void *plan);

/// Call right after an io_uring is mapped, and right before one is
/// unmapped. liburing maps and unmaps rings with raw system calls that
/// ThreadSanitizer cannot intercept, so a ring mapped where a freed one was
/// inherits the old ring's access history, and the next thread to fill its
/// entries is reported racing with the thread that used the old ring. These
/// order every ring set-up after every earlier tear-down (acquire/release
/// on one address). They do nothing outside ThreadSanitizer builds.
void cevpl_uring_mapped(void);
void cevpl_uring_unmapping(void);

#endif
