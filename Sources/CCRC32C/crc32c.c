#include "ccrc32c.h"
#include <pthread.h>
#include <string.h>

#define POLY 0x82F63B78u /* Castagnoli, reflected */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : (c >> 1);
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[k][n] = c;
        }
    }
}

/* The raw register (no inversions) over p[0..<n], eight bytes a step through eight tables. */
static uint32_t crc_software(uint32_t crc, const unsigned char *p, size_t n) {
    pthread_once(&table_once, build_table);
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = table[7][word & 0xff] ^ table[6][(word >> 8) & 0xff] ^
              table[5][(word >> 16) & 0xff] ^ table[4][(word >> 24) & 0xff] ^
              table[3][(word >> 32) & 0xff] ^ table[2][(word >> 40) & 0xff] ^
              table[1][(word >> 48) & 0xff] ^ table[0][word >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/*
 * The crc32 instruction takes three cycles but can start one every cycle, so the hardware path
 * runs three streams over three adjacent blocks at once and then joins their CRCs. The raw
 * register is linear: crc(c, A + B) = zeros(crc(c, A), |B|) ^ crc(0, B), where zeros(x, n) runs
 * the register over n zero bytes. zeros for a fixed n is a linear map of the 32-bit register,
 * applied here as four table lookups, one per byte of it.
 */
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

static uint32_t zeros_long[4][256], zeros_short[4][256];
static pthread_once_t zeros_once = PTHREAD_ONCE_INIT;

/* A linear map of the register as its 32 columns: the image of each bit. */
static uint32_t map_apply(const uint32_t *map, uint32_t v) {
    uint32_t r = 0;
    for (int i = 0; v; i++, v >>= 1)
        if (v & 1) r ^= map[i];
    return r;
}

static void map_compose(uint32_t *out, const uint32_t *a, const uint32_t *b) {
    uint32_t r[32];
    for (int i = 0; i < 32; i++) r[i] = map_apply(a, b[i]);
    memcpy(out, r, sizeof r);
}

static void build_zeros_table(uint32_t t[4][256], size_t bytes) {
    uint32_t step[32], result[32];
    /* One zero bit: shift right, and fold the polynomial in when the bit shifted out was set. */
    step[0] = POLY;
    for (int i = 1; i < 32; i++) step[i] = 1u << (i - 1);
    for (int i = 0; i < 32; i++) result[i] = 1u << i;
    for (size_t bits = bytes * 8; bits; bits >>= 1) {
        if (bits & 1) map_compose(result, step, result);
        map_compose(step, step, step);
    }
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++) t[k][b] = map_apply(result, b << (8 * k));
}

static void build_zeros_tables(void) {
    build_zeros_table(zeros_long, LONG_BLOCK);
    build_zeros_table(zeros_short, SHORT_BLOCK);
}

static inline uint32_t zeros(uint32_t t[4][256], uint32_t crc) {
    return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24];
}

static inline uint64_t load64(const unsigned char *p) {
    uint64_t word;
    memcpy(&word, p, 8);
    return word;
}

__attribute__((target("sse4.2")))
static inline uint32_t crc_three_blocks(uint32_t crc, const unsigned char *p, size_t block,
                                        uint32_t t[4][256]) {
    uint64_t c0 = crc, c1 = 0, c2 = 0;
    for (const unsigned char *end = p + block; p < end; p += 8) {
        c0 = _mm_crc32_u64(c0, load64(p));
        c1 = _mm_crc32_u64(c1, load64(p + block));
        c2 = _mm_crc32_u64(c2, load64(p + 2 * block));
    }
    return zeros(t, zeros(t, (uint32_t)c0) ^ (uint32_t)c1) ^ (uint32_t)c2;
}

__attribute__((target("sse4.2")))
static uint32_t crc_hardware(uint32_t crc, const unsigned char *p, size_t n) {
    if (n >= 3 * SHORT_BLOCK) {
        pthread_once(&zeros_once, build_zeros_tables);
        for (; n >= 3 * LONG_BLOCK; p += 3 * LONG_BLOCK, n -= 3 * LONG_BLOCK)
            crc = crc_three_blocks(crc, p, LONG_BLOCK, zeros_long);
        for (; n >= 3 * SHORT_BLOCK; p += 3 * SHORT_BLOCK, n -= 3 * SHORT_BLOCK)
            crc = crc_three_blocks(crc, p, SHORT_BLOCK, zeros_short);
    }
    uint64_t c = crc;
    for (; n >= 8; p += 8, n -= 8) c = _mm_crc32_u64(c, load64(p));
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}

static int has_sse42(void) {
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#else
static int has_sse42(void) { return 0; }
#endif

int tern_crc32c_hardware(void) { return has_sse42(); }

uint32_t tern_crc32c(uint32_t crc, const void *data, size_t length) {
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (has_sse42()) return ~crc_hardware(c, (const unsigned char *)data, length);
#endif
    return ~crc_software(c, (const unsigned char *)data, length);
}

uint32_t tern_crc32c_portable(uint32_t crc, const void *data, size_t length) {
    return ~crc_software(~crc, (const unsigned char *)data, length);
}
