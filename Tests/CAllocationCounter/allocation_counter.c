// Interposes the C allocator for the test executable: every allocation
// function forwards to glibc's own (__libc_*) and, while the calling thread
// has counting on, bumps a thread-local counter. The Swift runtime allocates
// through these same functions, so class instances, array storage and
// closure contexts are all counted. Linked into the test executable only:
// the library and the `evpl` binary keep the system allocator untouched.
//
// Under ThreadSanitizer or AddressSanitizer the sanitizer owns the
// allocator: its runtime intercepts malloc before anything else runs (an
// interposer here is called inside that start-up and crashes it), and
// bypassing it would blind it. There the interposer is left out and
// cevpl_allocation_counting_available() says so.

#include <errno.h>
#include <stddef.h>
#include <unistd.h>

#include "allocation_counter.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define CEVPL_SANITIZED 1
#endif
#endif

#ifdef CEVPL_SANITIZED

int cevpl_allocation_counting_available(void) { return 0; }
void cevpl_allocations_begin(void) {}
uint64_t cevpl_allocations_end(void) { return 0; }

#else

int cevpl_allocation_counting_available(void) { return 1; }

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *pointer);

// initial-exec: reading these must never call back into the allocator.
static __thread int counting __attribute__((tls_model("initial-exec")));
static __thread uint64_t allocations __attribute__((tls_model("initial-exec")));

// Called for every counted allocation; a debugger breakpoint here shows
// where a hot path allocates (`break cevpl_allocation_counted`, then `bt`).
__attribute__((noinline)) void cevpl_allocation_counted(void) {
    __asm__ volatile("");
}

static inline void note_allocation(void) {
    if (counting) {
        allocations++;
        cevpl_allocation_counted();
    }
}

void cevpl_allocations_begin(void) {
    allocations = 0;
    counting = 1;
}

uint64_t cevpl_allocations_end(void) {
    counting = 0;
    return allocations;
}

void *malloc(size_t size) {
    note_allocation();
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    note_allocation();
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    note_allocation();
    return __libc_realloc(pointer, size);
}

void free(void *pointer) {
    __libc_free(pointer);
}

void *memalign(size_t alignment, size_t size) {
    note_allocation();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    note_allocation();
    return __libc_memalign(alignment, size);
}

void *valloc(size_t size) {
    note_allocation();
    return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), size);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0) {
        return EINVAL;
    }
    note_allocation();
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) {
        return ENOMEM;
    }
    *result = pointer;
    return 0;
}

#endif  // CEVPL_SANITIZED
