// libaio (Debian's libaio-dev ships no pkg-config file, so the module map
// links -laio directly), plus a user-space reaper for the AIO completion
// ring, which the kernel maps at the address of the io_context.
#ifndef CEVPL_LIBAIO_H
#define CEVPL_LIBAIO_H

#include <libaio.h>

/// The kernel's completion ring header (fs/aio.c), followed by the events.
struct cevpl_aio_ring {
    unsigned id;
    unsigned nr;
    unsigned head;
    unsigned tail;
    unsigned magic;
    unsigned compat_features;
    unsigned incompat_features;
    unsigned header_length;
    struct io_event events[];
};

/// Copies up to `max` completed events out of the context's ring without a
/// system call. Returns how many, or -1 when the ring layout is not the one
/// this code knows (then use io_getevents).
static inline int cevpl_aio_take_events(io_context_t context, struct io_event *out, int max) {
    struct cevpl_aio_ring *ring = (struct cevpl_aio_ring *)context;
    if (ring == 0 || ring->magic != 0xa10a10a1u || ring->incompat_features != 0) return -1;
    unsigned head = ring->head;
    unsigned tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
    int count = 0;
    while (head != tail && count < max) {
        out[count++] = ring->events[head];
        head = (head + 1) % ring->nr;
    }
    if (count > 0) __atomic_store_n(&ring->head, head, __ATOMIC_RELEASE);
    return count;
}

#endif
