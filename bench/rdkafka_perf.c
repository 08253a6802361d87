/*
 * bench/peers' librdkafka load generator: a producer in C on librdkafka's own API, so that what
 * it measures is the broker and librdkafka rather than a binding's per-record calls (the
 * confluent-kafka binding took 1.8 CPU seconds per GB at 700 MB/s, more than the broker).
 *
 *   rdkafka_perf BOOTSTRAP TOPIC SECONDS RECORD_SIZE [CONF=VALUE ...]
 *
 * Produces records of RECORD_SIZE random bytes without keys to an existing TOPIC for SECONDS
 * (after one record sent and acknowledged to warm up metadata and connections), waits for every
 * delivery, and prints one JSON line like `tern perf --json`: records and bytes acknowledged, the
 * seconds from the first record to the last acknowledgement, records sent, delivery latency
 * (librdkafka's own, from produce() to the acknowledgement) p50/p99/max in ms, and failed
 * deliveries by error name. CONF=VALUE pairs are librdkafka settings.
 *
 * Built by bench/peers (`rdkafka_perf_bin`): compiled with librdkafka-dev's header and linked to
 * the librdkafka that confluent-kafka's wheel bundles, e.g.
 *   cc -O2 -o rdkafka_perf bench/rdkafka_perf.c .../confluent_kafka.libs/librdkafka-*.so.1 \
 *      -Wl,-rpath,.../confluent_kafka.libs
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int32_t *latencies_us;
static size_t latency_count, latency_capacity;

struct failure { rd_kafka_resp_err_t err; long count; };
static struct failure failures[32];
static int failure_kinds;

static void note_failure(rd_kafka_resp_err_t err) {
    for (int i = 0; i < failure_kinds; i++)
        if (failures[i].err == err) { failures[i].count++; return; }
    if (failure_kinds < 32) failures[failure_kinds++] = (struct failure){err, 1};
}

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk; (void)opaque;
    if (m->err) { note_failure(m->err); return; }
    if (latency_count == latency_capacity) {
        latency_capacity = latency_capacity ? latency_capacity * 2 : 1 << 20;
        latencies_us = realloc(latencies_us, latency_capacity * sizeof *latencies_us);
        if (!latencies_us) { fputs("out of memory\n", stderr); exit(2); }
    }
    int64_t us = rd_kafka_message_latency(m);
    latencies_us[latency_count++] = us < 0 ? 0 : (us > INT32_MAX ? INT32_MAX : (int32_t)us);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static double quantile_ms(double q) {
    size_t i = (size_t)(q * latency_count);
    if (i >= latency_count) i = latency_count - 1;
    return latencies_us[i] / 1000.0;
}

static rd_kafka_resp_err_t produce_one(rd_kafka_t *rk, const char *topic, void *value, size_t size) {
    return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(value, size),
                             RD_KAFKA_V_MSGFLAGS(0), RD_KAFKA_V_END);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fputs("usage: rdkafka_perf BOOTSTRAP TOPIC SECONDS RECORD_SIZE [CONF=VALUE ...]\n", stderr);
        return 2;
    }
    const char *topic = argv[2];
    double seconds = atof(argv[3]);
    size_t size = (size_t)atol(argv[4]);
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    for (int i = 5; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) { fprintf(stderr, "not CONF=VALUE: %s\n", argv[i]); return 2; }
        *eq = 0;
        if (rd_kafka_conf_set(conf, argv[i], eq + 1, err, sizeof err) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, delivered);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) { fprintf(stderr, "%s\n", err); return 2; }

    /* The value is never changed or freed, so librdkafka may point at it (flags 0). */
    unsigned char *value = malloc(size ? size : 1);
    FILE *random = fopen("/dev/urandom", "rb");
    if (!value || !random || fread(value, 1, size, random) != size) { fputs("no random bytes\n", stderr); return 2; }
    fclose(random);

    rd_kafka_resp_err_t warm = produce_one(rk, topic, value, size);
    if (!warm) warm = rd_kafka_flush(rk, 60000);
    if (!warm && failure_kinds) warm = failures[0].err;
    if (warm || latency_count != 1) {
        fprintf(stderr, "the warm-up record was not acknowledged: %s\n", rd_kafka_err2str(warm));
        return 1;
    }
    latency_count = 0;

    long sent = 0;
    double start = now(), end = start + seconds;
    do {
        for (int i = 0; i < 1000; i++) {
            rd_kafka_resp_err_t e = produce_one(rk, topic, value, size);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) sent++;
            else if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) rd_kafka_poll(rk, 5);
            else { fprintf(stderr, "produce: %s\n", rd_kafka_err2str(e)); return 1; }
        }
        rd_kafka_poll(rk, 0);
    } while (now() < end);
    if (rd_kafka_flush(rk, 300000)) fputs("some records were still unacknowledged after 300 s\n", stderr);
    double elapsed = now() - start;

    qsort(latencies_us, latency_count, sizeof *latencies_us, by_value);
    printf("{\"records\": %zu, \"bytes\": %zu, \"seconds\": %.6f, \"sent\": %ld, \"latency_ms\": {",
           latency_count, latency_count * size, elapsed, sent);
    if (latency_count)
        printf("\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f", quantile_ms(0.5), quantile_ms(0.99), quantile_ms(1.0));
    else
        printf("\"p50\": null, \"p99\": null, \"max\": null");
    printf("}, \"errors\": {");
    for (int i = 0; i < failure_kinds; i++)
        printf("%s\"%s\": %ld", i ? ", " : "", rd_kafka_err2name(failures[i].err), failures[i].count);
    printf("}}\n");
    rd_kafka_destroy(rk);
    return 0;
}
