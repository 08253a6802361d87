#include "cmalloc.h"
#include <stdlib.h>  // defines __GLIBC__ on glibc

#if defined(__GLIBC__)
#include <malloc.h>

int tern_fix_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }
int tern_limit_malloc_arenas(int count) { return mallopt(M_ARENA_MAX, count); }
#else
int tern_fix_mmap_threshold(int bytes) { (void)bytes; return 0; }
int tern_limit_malloc_arenas(int count) { (void)count; return 0; }
#endif
