#ifndef CCRC32C_H
#define CCRC32C_H
#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli), as used by Kafka record batches. `crc` is the running value
/// (start with 0); the result is final (already inverted).
uint32_t tern_crc32c(uint32_t crc, const void *data, size_t length);

/// The same without the CPU's instructions (table lookups): what the tests check the
/// hardware path against.
uint32_t tern_crc32c_portable(uint32_t crc, const void *data, size_t length);

/// 1 when the SSE4.2 instruction path is in use.
int tern_crc32c_hardware(void);
#endif
