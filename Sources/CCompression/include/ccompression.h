// A thin shim over zlib, zstd, lz4 (frame format) and snappy for Kafka's record batch
// codecs. Swift calls these instead of the libraries' macros and struct layouts.
#ifndef TERN_CCOMPRESSION_H
#define TERN_CCOMPRESSION_H

#include <stddef.h>
#include <stdint.h>

// Kafka's codec ids (record batch attributes bits 0-2).
enum {
    TERN_CODEC_GZIP = 1,
    TERN_CODEC_SNAPPY = 2,
    TERN_CODEC_LZ4 = 3,
    TERN_CODEC_ZSTD = 4,
};

// Status of a streaming decompression step.
enum {
    TERN_DECOMP_ERROR = -1,
    TERN_DECOMP_CONTINUE = 0,   // call again: output space ran out or input is not finished
    TERN_DECOMP_END = 1,        // a frame (gzip member, lz4 frame, zstd frame) ended
};

typedef struct tern_decompressor tern_decompressor;

// A streaming decompressor for gzip, lz4 frames or zstd; NULL for other codecs or no memory.
tern_decompressor *tern_decompressor_create(int codec);
void tern_decompressor_free(tern_decompressor *d);
// Starts a new frame (for inputs that concatenate several).
int tern_decompressor_reset(tern_decompressor *d);
// Consumes input and produces output; *in_used and *out_used say how much of each.
int tern_decompressor_run(tern_decompressor *d,
                          const uint8_t *in, size_t in_len, size_t *in_used,
                          uint8_t *out, size_t out_cap, size_t *out_used);

// Largest output of tern_compress for n input bytes (0 for an unknown codec).
size_t tern_compress_bound(int codec, size_t n);
// Compresses in one call as Kafka's clients frame it: gzip member, LZ4 frame with
// independent 64 KiB blocks, zstd frame, xerial-framed snappy. Returns bytes written, 0 on error.
size_t tern_compress(int codec, int level, const uint8_t *in, size_t n, uint8_t *out, size_t cap);

// Raw (unframed) snappy blocks.
int tern_snappy_uncompressed_length(const uint8_t *in, size_t n, size_t *length);
int tern_snappy_uncompress(const uint8_t *in, size_t n, uint8_t *out, size_t *out_len);

#endif
