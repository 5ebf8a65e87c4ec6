// liburing, plus what Swift cannot import from it: flag macros built from
// bit numbers, the CQ ring walk (a macro upstream) and the provided-buffer
// ring setup that liburing 2.3 lacks (io_uring_setup_buf_ring is 2.4+).
#ifndef CEVPL_URING_H
#define CEVPL_URING_H

#include <errno.h>
#include <liburing.h>
#include <sys/mman.h>

static const unsigned CEVPL_IOSQE_BUFFER_SELECT = IOSQE_BUFFER_SELECT;
static const unsigned CEVPL_IOSQE_CQE_SKIP_SUCCESS = IOSQE_CQE_SKIP_SUCCESS;

/// The SQ ring's flags word (IORING_SQ_TASKRUN, IORING_SQ_CQ_OVERFLOW,
/// IORING_SQ_NEED_WAKEUP), read without a syscall.
static inline unsigned cevpl_uring_sq_flags(const struct io_uring *ring) {
    return IO_URING_READ_ONCE(*ring->sq.kflags);
}

/// Copies up to `max` completions into `out` and releases their CQ slots,
/// so handlers may submit and enter the kernel while the batch is handled.
static inline unsigned cevpl_uring_take_cqes(struct io_uring *ring, struct io_uring_cqe *out, unsigned max) {
    unsigned head = *ring->cq.khead;
    unsigned tail = io_uring_smp_load_acquire(ring->cq.ktail);
    unsigned count = tail - head;
    if (count > max) count = max;
    for (unsigned index = 0; index < count; index++) {
        out[index] = ring->cq.cqes[(head + index) & ring->cq.ring_mask];
    }
    if (count > 0) io_uring_smp_store_release(ring->cq.khead, head + count);
    return count;
}

/// IOU_PBUF_RING_INC (kernel 6.12+): the kernel consumes a provided buffer
/// a receive at a time, and IORING_CQE_F_BUF_MORE on a completion says it
/// keeps the buffer for the next one. The installed headers predate both.
static const unsigned short CEVPL_IOU_PBUF_RING_INC = 2;
static const unsigned CEVPL_IORING_CQE_F_BUF_MORE = 1U << 4;

/// Maps a provided-buffer ring of `entries` slots (a power of two) and
/// registers it as buffer group `group` with `flags` (0 or
/// CEVPL_IOU_PBUF_RING_INC). Returns NULL with `*error` set to an errno
/// value on failure.
static inline struct io_uring_buf_ring *cevpl_uring_register_buffer_ring(struct io_uring *ring, unsigned entries, unsigned short group,
                                                                         unsigned short flags, int *error) {
    size_t size = (size_t)entries * sizeof(struct io_uring_buf);
    void *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (memory == MAP_FAILED) {
        *error = errno;
        return NULL;
    }
    struct io_uring_buf_reg registration = {0};
    registration.ring_addr = (unsigned long)memory;
    registration.ring_entries = entries;
    registration.bgid = group;
    registration.pad = flags;  // `flags` in newer headers
    int status = io_uring_register_buf_ring(ring, &registration, 0);
    if (status != 0) {
        munmap(memory, size);
        *error = -status;
        return NULL;
    }
    return (struct io_uring_buf_ring *)memory;
}

/// Unregisters and unmaps a ring made by cevpl_uring_register_buffer_ring.
static inline void cevpl_uring_unregister_buffer_ring(struct io_uring *ring, struct io_uring_buf_ring *buffers, unsigned entries, unsigned short group) {
    io_uring_unregister_buf_ring(ring, group);
    munmap(buffers, (size_t)entries * sizeof(struct io_uring_buf));
}

#endif
