#include "ccompression.h"

#include <lz4frame.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

struct tern_decompressor {
    int codec;
    z_stream z;
    LZ4F_dctx *lz4;
    ZSTD_DStream *zstd;
};

tern_decompressor *tern_decompressor_create(int codec) {
    tern_decompressor *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->codec = codec;
    switch (codec) {
    case TERN_CODEC_GZIP:
        // 15 + 32: a zlib or gzip header, detected automatically.
        if (inflateInit2(&d->z, 15 + 32) != Z_OK) { free(d); return NULL; }
        return d;
    case TERN_CODEC_LZ4:
        if (LZ4F_isError(LZ4F_createDecompressionContext(&d->lz4, LZ4F_VERSION))) { free(d); return NULL; }
        return d;
    case TERN_CODEC_ZSTD:
        d->zstd = ZSTD_createDStream();
        if (!d->zstd) { free(d); return NULL; }
        ZSTD_initDStream(d->zstd);
        return d;
    default:
        free(d);
        return NULL;
    }
}

void tern_decompressor_free(tern_decompressor *d) {
    if (!d) return;
    switch (d->codec) {
    case TERN_CODEC_GZIP: inflateEnd(&d->z); break;
    case TERN_CODEC_LZ4: LZ4F_freeDecompressionContext(d->lz4); break;
    case TERN_CODEC_ZSTD: ZSTD_freeDStream(d->zstd); break;
    }
    free(d);
}

int tern_decompressor_reset(tern_decompressor *d) {
    switch (d->codec) {
    case TERN_CODEC_GZIP: return inflateReset(&d->z) == Z_OK ? 0 : -1;
    case TERN_CODEC_LZ4: LZ4F_resetDecompressionContext(d->lz4); return 0;
    case TERN_CODEC_ZSTD: return ZSTD_isError(ZSTD_DCtx_reset(d->zstd, ZSTD_reset_session_only)) ? -1 : 0;
    }
    return -1;
}

int tern_decompressor_run(tern_decompressor *d,
                          const uint8_t *in, size_t in_len, size_t *in_used,
                          uint8_t *out, size_t out_cap, size_t *out_used) {
    *in_used = 0;
    *out_used = 0;
    switch (d->codec) {
    case TERN_CODEC_GZIP: {
        // avail_in/avail_out are 32-bit; callers pass chunks well below 4 GiB.
        d->z.next_in = (Bytef *)in;
        d->z.avail_in = (uInt)(in_len > 0x7fffffff ? 0x7fffffff : in_len);
        d->z.next_out = out;
        d->z.avail_out = (uInt)(out_cap > 0x7fffffff ? 0x7fffffff : out_cap);
        uInt avail_in = d->z.avail_in, avail_out = d->z.avail_out;
        int rc = inflate(&d->z, Z_NO_FLUSH);
        *in_used = avail_in - d->z.avail_in;
        *out_used = avail_out - d->z.avail_out;
        if (rc == Z_STREAM_END) return TERN_DECOMP_END;
        // Z_BUF_ERROR: no progress possible (no input left or no output space); the caller
        // tells which from what it passed.
        if (rc == Z_OK || rc == Z_BUF_ERROR) return TERN_DECOMP_CONTINUE;
        return TERN_DECOMP_ERROR;
    }
    case TERN_CODEC_LZ4: {
        size_t src = in_len, dst = out_cap;
        size_t hint = LZ4F_decompress(d->lz4, out, &dst, in, &src, NULL);
        if (LZ4F_isError(hint)) return TERN_DECOMP_ERROR;
        *in_used = src;
        *out_used = dst;
        return hint == 0 ? TERN_DECOMP_END : TERN_DECOMP_CONTINUE;
    }
    case TERN_CODEC_ZSTD: {
        ZSTD_inBuffer ib = { in, in_len, 0 };
        ZSTD_outBuffer ob = { out, out_cap, 0 };
        size_t rc = ZSTD_decompressStream(d->zstd, &ob, &ib);
        if (ZSTD_isError(rc)) return TERN_DECOMP_ERROR;
        *in_used = ib.pos;
        *out_used = ob.pos;
        return rc == 0 ? TERN_DECOMP_END : TERN_DECOMP_CONTINUE;
    }
    }
    return TERN_DECOMP_ERROR;
}

// xerial snappy-java framing, as Kafka's Java clients and brokers write it.
static const uint8_t xerial_magic[8] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0 };
#define XERIAL_HEADER 16
#define XERIAL_BLOCK 32768

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static LZ4F_preferences_t lz4_prefs(int level) {
    LZ4F_preferences_t p;
    memset(&p, 0, sizeof p);
    // Kafka's Java reader (KafkaLZ4BlockInputStream) handles independent blocks only.
    p.frameInfo.blockSizeID = LZ4F_max64KB;
    p.frameInfo.blockMode = LZ4F_blockIndependent;
    p.compressionLevel = level;
    return p;
}

size_t tern_compress_bound(int codec, size_t n) {
    switch (codec) {
    case TERN_CODEC_GZIP: return compressBound((uLong)n) + 32;
    case TERN_CODEC_LZ4: { LZ4F_preferences_t p = lz4_prefs(0); return LZ4F_compressFrameBound(n, &p); }
    case TERN_CODEC_ZSTD: return ZSTD_compressBound(n);
    case TERN_CODEC_SNAPPY: {
        size_t blocks = n / XERIAL_BLOCK + 1;
        return XERIAL_HEADER + blocks * (4 + snappy_max_compressed_length(XERIAL_BLOCK));
    }
    }
    return 0;
}

size_t tern_compress(int codec, int level, const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
    switch (codec) {
    case TERN_CODEC_GZIP: {
        z_stream z;
        memset(&z, 0, sizeof z);
        // 15 + 16: a gzip header, as java.util.zip.GZIPOutputStream writes.
        if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)n;
        z.next_out = out;
        z.avail_out = (uInt)cap;
        int rc = deflate(&z, Z_FINISH);
        size_t written = cap - z.avail_out;
        deflateEnd(&z);
        return rc == Z_STREAM_END ? written : 0;
    }
    case TERN_CODEC_LZ4: {
        LZ4F_preferences_t p = lz4_prefs(level);
        size_t rc = LZ4F_compressFrame(out, cap, in, n, &p);
        return LZ4F_isError(rc) ? 0 : rc;
    }
    case TERN_CODEC_ZSTD: {
        size_t rc = ZSTD_compress(out, cap, in, n, level);
        return ZSTD_isError(rc) ? 0 : rc;
    }
    case TERN_CODEC_SNAPPY: {
        if (cap < XERIAL_HEADER) return 0;
        memcpy(out, xerial_magic, 8);
        put_be32(out + 8, 1);   // version
        put_be32(out + 12, 1);  // minimum compatible version
        size_t pos = XERIAL_HEADER;
        for (size_t off = 0; off < n; off += XERIAL_BLOCK) {
            size_t chunk = n - off < XERIAL_BLOCK ? n - off : XERIAL_BLOCK;
            if (cap - pos < 4) return 0;
            size_t len = cap - pos - 4;
            if (snappy_compress((const char *)in + off, chunk, (char *)out + pos + 4, &len) != SNAPPY_OK) return 0;
            put_be32(out + pos, (uint32_t)len);
            pos += 4 + len;
        }
        return pos;
    }
    }
    return 0;
}

int tern_snappy_uncompressed_length(const uint8_t *in, size_t n, size_t *length) {
    return snappy_uncompressed_length((const char *)in, n, length) == SNAPPY_OK ? 0 : -1;
}

int tern_snappy_uncompress(const uint8_t *in, size_t n, uint8_t *out, size_t *out_len) {
    return snappy_uncompress((const char *)in, n, (char *)out, out_len) == SNAPPY_OK ? 0 : -1;
}
