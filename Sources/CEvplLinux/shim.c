#define _GNU_SOURCE
#include "CEvplLinux.h"
#include <malloc.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <linux/openat2.h>
#include <unistd.h>
#include <time.h>

int cevpl_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = token;
    return epoll_ctl(epfd, op, fd, &ev);
}

static int cevpl_have_pwait2 = 1;

int cevpl_epoll_wait(int epfd, uint32_t *events, uint64_t *tokens, int max, int64_t timeout_ns) {
    struct epoll_event buf[256];
    if (max > 256) max = 256;
    int n;
    if (timeout_ns <= 0 || !cevpl_have_pwait2) {
        int ms = timeout_ns < 0 ? -1 : (int)((timeout_ns + 999999) / 1000000);
        n = epoll_wait(epfd, buf, max, ms);
    } else {
        struct timespec ts = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 };
        n = epoll_pwait2(epfd, buf, max, &ts, NULL);
        if (n < 0 && errno == ENOSYS) {
            cevpl_have_pwait2 = 0;
            return cevpl_epoll_wait(epfd, events, tokens, max, timeout_ns);
        }
    }
    for (int i = 0; i < n; i++) {
        events[i] = buf[i].events;
        tokens[i] = buf[i].data.u64;
    }
    return n;
}

static _Thread_local void *current_loop;
static _Thread_local void (*current_loop_release)(void *);
static pthread_key_t current_loop_key;
static pthread_once_t current_loop_key_once = PTHREAD_ONCE_INIT;

/* Runs at thread exit with the last loop recorded: the thread's reference goes. */
static void current_loop_thread_exit(void *loop) {
    if (loop && current_loop_release) current_loop_release(loop);
}

static void current_loop_make_key(void) {
    pthread_key_create(&current_loop_key, current_loop_thread_exit);
}

void *cevpl_current_loop(void) { return current_loop; }

void cevpl_set_current_loop(void *loop, void (*release)(void *)) {
    pthread_once(&current_loop_key_once, current_loop_make_key);
    current_loop = loop;
    current_loop_release = release;
    pthread_setspecific(current_loop_key, loop);
}

int cevpl_set_affinity(const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) return EINVAL;
        CPU_SET(cpus[i], &set);
    }
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int cevpl_affinity_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
}

int cevpl_set_timer_slack(unsigned long nanoseconds) {
    return prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0);
}

void cevpl_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = 0;
    pthread_setname_np(pthread_self(), buf);
}

int cevpl_signalfd_for_termination(void) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0) return -1;
    return signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

int cevpl_current_cpu(void) { return sched_getcpu(); }

#include <sys/syscall.h>
#include <unistd.h>
#include <linux/io_uring.h>

int cevpl_io_uring_probe(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof(params));
    long fd = syscall(__NR_io_uring_setup, 1, &params);
    if (fd < 0) return errno;
    close((int)fd);
    return 0;
}

int cevpl_sendmmsg(int fd, struct msghdr *headers, unsigned int count, int flags) {
    struct mmsghdr batch[64];
    if (count > 64) count = 64;
    for (unsigned int i = 0; i < count; i++) {
        batch[i].msg_hdr = headers[i];
        batch[i].msg_len = 0;
    }
    return sendmmsg(fd, batch, count, flags);
}

int cevpl_accept(int fd, struct sockaddr *address, socklen_t *length) {
    return accept4(fd, address, length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int cevpl_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length);
}

long cevpl_preadv_nowait(int fd, const struct iovec *vectors, int count, int64_t offset) {
    ssize_t result = preadv2(fd, vectors, count, (off_t)offset, RWF_NOWAIT);
    return result < 0 ? -errno : (long)result;
}

int cevpl_recv_two(int fd, void *first, size_t first_length, void *second, size_t second_length,
                   struct sockaddr_storage *senders, socklen_t *sender_lengths, size_t *lengths) {
    struct iovec vectors[2] = {{first, first_length}, {second, second_length}};
    struct mmsghdr batch[2];
    memset(batch, 0, sizeof(batch));
    for (int i = 0; i < 2; i++) {
        batch[i].msg_hdr.msg_name = &senders[i];
        batch[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        batch[i].msg_hdr.msg_iov = &vectors[i];
        batch[i].msg_hdr.msg_iovlen = 1;
    }
    int count = recvmmsg(fd, batch, 2, MSG_DONTWAIT | MSG_TRUNC, NULL);
    for (int i = 0; i < count; i++) {
        sender_lengths[i] = batch[i].msg_hdr.msg_namelen;
        lengths[i] = batch[i].msg_len;
    }
    return count;
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CEVPL_TSAN 1
#endif
#endif

#ifdef CEVPL_TSAN
void __tsan_acquire(void *address);
void __tsan_release(void *address);
static char cevpl_uring_mapping_order;
void cevpl_uring_mapped(void) { __tsan_acquire(&cevpl_uring_mapping_order); }
void cevpl_uring_unmapping(void) { __tsan_release(&cevpl_uring_mapping_order); }
#else
void cevpl_uring_mapped(void) {}
void cevpl_uring_unmapping(void) {}
#endif

static __thread void *thread_fault_plan;

void *cevpl_thread_fault_plan(void) { return thread_fault_plan; }

void cevpl_set_thread_fault_plan(void *plan) { thread_fault_plan = plan; }

int cevpl_malloc_trim(void) {
    return malloc_trim(0);
}

int cevpl_open_beneath(int dirfd, const char *path, int flags) {
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)flags;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    return fd < 0 ? -errno : (int)fd;
}
