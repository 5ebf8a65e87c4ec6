#ifndef CEVPL_ALLOCATION_COUNTER_H
#define CEVPL_ALLOCATION_COUNTER_H

#include <stdint.h>

/// 1 when the allocator is interposed and counting works; 0 in sanitizer
/// builds, where the sanitizer's allocator must stay in place.
int cevpl_allocation_counting_available(void);

/// Starts counting heap allocations made by the calling thread (from zero).
void cevpl_allocations_begin(void);

/// Stops counting on the calling thread and returns how many allocations
/// (malloc, calloc, realloc, memalign, aligned_alloc, posix_memalign, valloc)
/// it made since cevpl_allocations_begin.
uint64_t cevpl_allocations_end(void);

#endif
