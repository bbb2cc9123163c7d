/*
 * kv_client.c - kv-client: a command line for a kv-server.
 *
 *   kv-client HOST:PORT put KEY VALUE    (VALUE "-": the value is read from stdin)
 *   kv-client HOST:PORT get KEY          prints the value
 *   kv-client HOST:PORT delete KEY
 *   kv-client HOST:PORT keys             prints every key, one a line
 *
 * Exit status: 0 done, 1 an error (printed), 2 usage, 3 no such key (get
 * and delete).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"

static int usage(void)
{
    fprintf(stderr, "usage: kv-client HOST:PORT put KEY VALUE|-\n"
                    "       kv-client HOST:PORT get KEY\n"
                    "       kv-client HOST:PORT delete KEY\n"
                    "       kv-client HOST:PORT keys\n");
    return 2;
}

/* All of standard input, up to one byte more than a value may hold. */
static uint8_t *read_stdin(size_t *len)
{
    size_t cap = (size_t)kv_MAX_VALUE + 1, n = 0, got;
    uint8_t *p = malloc(cap);

    if (p == NULL) {
        fprintf(stderr, "kv-client: out of memory\n");
        return NULL;
    }
    while (n < cap && (got = fread(p + n, 1, cap - n, stdin)) > 0)
        n += got;
    if (ferror(stdin)) {
        fprintf(stderr, "kv-client: reading standard input failed\n");
        free(p);
        return NULL;
    }
    *len = n;           /* over kv_MAX_VALUE: the stub refuses it (QRPC_EBOUND) */
    return p;
}

static int run(qrpc_client *kv, int argc, char **argv)
{
    const char *cmd = argv[2];
    int rc;

    if (strcmp(cmd, "put") == 0 && argc == 5) {
        qrpc_bytes value = { (uint8_t *)argv[4], strlen(argv[4]) };
        uint8_t *in = NULL;

        if (strcmp(argv[4], "-") == 0) {
            in = read_stdin(&value.len);
            if (in == NULL)
                return 1;
            value.data = in;
        }
        rc = kv_KV_put(kv, argv[3], &value);
        free(in);
        if (rc == kv_KvError_FULL) {
            fprintf(stderr, "kv-client: the store is full\n");
            return 1;
        }
    } else if (strcmp(cmd, "get") == 0 && argc == 4) {
        qrpc_bytes *value = NULL;

        rc = kv_KV_get(kv, argv[3], &value);
        if (rc == 0 && value == NULL) {
            fprintf(stderr, "kv-client: %s: no such key\n", argv[3]);
            return 3;
        }
        if (rc == 0) {
            fwrite(value->data, 1, value->len, stdout);
            putchar('\n');
            kv_bytes_opt_free(&value);
        }
    } else if (strcmp(cmd, "delete") == 0 && argc == 4) {
        bool existed = false;

        rc = kv_KV_delete(kv, argv[3], &existed);
        if (rc == 0 && !existed) {
            fprintf(stderr, "kv-client: %s: no such key\n", argv[3]);
            return 3;
        }
    } else if (strcmp(cmd, "keys") == 0 && argc == 3) {
        kv_string_list keys = { NULL, 0 };

        rc = kv_KV_keys(kv, &keys);
        for (size_t i = 0; rc == 0 && i < keys.len; i++)
            printf("%s\n", keys.items[i]);
        kv_string_list_free(&keys);
    } else {
        return usage();
    }
    if (rc != 0) {
        fprintf(stderr, "kv-client: %s: %s (%s)\n", cmd, qrpc_strerror(rc), qrpc_err_name(rc));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    qrpc_node_config cfg;
    qrpc_node *node = NULL;
    qrpc_client *kv = NULL;
    int rc, status;

    if (argc < 3)
        return usage();
    qrpc_node_config_init(&cfg);
    cfg.max_message = 2 * kv_MAX_VALUE;
    cfg.timeout_ms = 10000;
    rc = qrpc_node_create(&cfg, &node);
    if (rc != 0) {
        fprintf(stderr, "kv-client: %s\n", qrpc_strerror(rc));
        return 1;
    }
    rc = kv_KV_connect(node, argv[1], &kv);
    if (rc != 0) {
        fprintf(stderr, "kv-client: %s: %s\n", argv[1], qrpc_strerror(rc));
        qrpc_node_destroy(node);
        return 1;
    }
    status = run(kv, argc, argv);
    qrpc_client_destroy(kv);
    qrpc_node_destroy(node);
    return status;
}
