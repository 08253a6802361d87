#ifndef TERN_CMALLOC_H
#define TERN_CMALLOC_H

/// Fixes the C library's mmap threshold at `bytes` (glibc's mallopt M_MMAP_THRESHOLD), which
/// also turns off glibc's habit of raising it to the size of each mmap'd block freed.
/// Returns 1 when set, 0 when refused or not glibc.
int tern_fix_mmap_threshold(int bytes);

/// Caps the C library's malloc arenas at `count` (glibc's mallopt M_ARENA_MAX).
/// Returns 1 when set, 0 when refused or not glibc.
int tern_limit_malloc_arenas(int count);

#endif
