/*
 * test_channel.c - RpcChannels: a service served as raw requests that the
 * program takes with qrpc_recv_request() and answers with
 * qrpc_send_response(), reached by generated stubs both on the same node
 * (the local path) and from another node over TCP on 127.0.0.1.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "testutil.h"
#include "kitchen.h"

/* A thread that answers add() and ping() from the channel until it closes. */
typedef struct ch_server {
    qrpc_channel *ch;
    pthread_t thread;
    atomic_int answered;
    atomic_int oneways;
    int hold;                   /* answer nothing: leave requests queued */
} ch_server;

static void *ch_serve(void *arg)
{
    ch_server *sv = arg;

    for (;;) {
        qrpc_request *r;
        qrpc_reader in;
        qrpc_buf out = { NULL, 0, 0 };
        int32_t a, b;
        int rc = qrpc_recv_request(sv->ch, -1, &r);

        if (rc == QRPC_ECLOSED)
            return NULL;
        if (rc != 0)
            continue;
        qrpc_request_args(r, &in);
        atomic_fetch_add(&sv->answered, 1);     /* before the caller can see it */
        switch (qrpc_request_method(r)) {
        case kitchen_Kitchen_add_ID:
            if (qrpc_get_i32(&in, &a) != 0 || qrpc_get_i32(&in, &b) != 0) {
                qrpc_send_response(r, QRPC_EDECODE, NULL);
                break;
            }
            if (a < 0) {
                qrpc_send_response(r, 7, NULL);     /* an application error */
                break;
            }
            qrpc_put_i32(&out, a + b);
            qrpc_send_response(r, 0, &out);
            break;
        case kitchen_Kitchen_notify_ID:
            atomic_fetch_add(&sv->oneways, 1);
            qrpc_send_response(r, 0, NULL);
            break;
        default:
            qrpc_send_response(r, QRPC_ENOMETHOD, NULL);
            break;
        }
    }
}

static void ch_start(ch_server *sv, qrpc_node *n)
{
    atomic_init(&sv->answered, 0);
    atomic_init(&sv->oneways, 0);
    ck_assert_int_eq(qrpc_channel_open(n, &kitchen_Kitchen_desc, &sv->ch), 0);
    ck_assert_int_eq(pthread_create(&sv->thread, NULL, ch_serve, sv), 0);
}

static void ch_stop(ch_server *sv)
{
    qrpc_channel_close(sv->ch);
    ck_assert_int_eq(pthread_join(sv->thread, NULL), 0);
}

static void ch_calls(qrpc_client *c, ch_server *sv)
{
    int32_t r = 0;
    int i;

    for (i = 0; i < 200; i++) {
        int rc = kitchen_Kitchen_add(c, i, 1000, &r);

        ck_assert_msg(rc == 0, "add %d: %s", i, qrpc_err_name(rc));
        ck_assert_int_eq(r, i + 1000);
    }
    ck_assert_int_eq(kitchen_Kitchen_add(c, -1, 0, &r), 7);
    ck_assert_int_eq(kitchen_Kitchen_ping(c), QRPC_ENOMETHOD);
    ck_assert_int_ge(atomic_load(&sv->answered), 202);
    /* a oneway call returns once handed over: wait (bounded) for it to land */
    ck_assert_int_eq(kitchen_Kitchen_notify(c, "x", NULL), 0);
    for (i = 0; i < 5000 && atomic_load(&sv->oneways) == 0; i++)
        nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
    ck_assert_int_eq(atomic_load(&sv->oneways), 1);
}

START_TEST(channel_local)
{
    qrpc_node *n;
    qrpc_client *c;
    ch_server sv;

    ck_assert_int_eq(qrpc_node_create(NULL, &n), 0);
    ch_start(&sv, n);
    /* a second registration of the same service is refused */
    ck_assert_int_eq(kitchen_Kitchen_serve(n, NULL, NULL), QRPC_EEXIST);
    ck_assert_int_eq(kitchen_Kitchen_connect(n, "local", &c), 0);
    ch_calls(c, &sv);
    qrpc_client_destroy(c);
    ch_stop(&sv);
    qrpc_node_destroy(n);
}
END_TEST

START_TEST(channel_tcp)
{
    qrpc_node_config cfg;
    qrpc_node *srv, *cli;
    qrpc_client *c;
    ch_server sv;

    qrpc_node_config_init(&cfg);
    cfg.listen = "127.0.0.1:0";
    ck_assert_int_eq(qrpc_node_create(&cfg, &srv), 0);
    ch_start(&sv, srv);
    ck_assert_int_eq(qrpc_node_create(NULL, &cli), 0);
    ck_assert_int_eq(kitchen_Kitchen_connect(cli, qrpc_node_address(srv), &c), 0);
    ch_calls(c, &sv);
    qrpc_client_destroy(c);
    qrpc_node_destroy(cli);
    ch_stop(&sv);
    qrpc_node_destroy(srv);
}
END_TEST

START_TEST(channel_recv_timeout_and_close)
{
    qrpc_node *n;
    qrpc_channel *ch;
    qrpc_request *r = (qrpc_request *)&r;

    ck_assert_int_eq(qrpc_node_create(NULL, &n), 0);
    ck_assert_int_eq(qrpc_channel_open(n, &kitchen_Kitchen_desc, &ch), 0);
    ck_assert_int_eq(qrpc_recv_request(ch, 0, &r), QRPC_ETIMEDOUT);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(qrpc_recv_request(ch, 20, &r), QRPC_ETIMEDOUT);
    ck_assert_int_eq(qrpc_send_response(NULL, 0, NULL), QRPC_EINVAL);
    qrpc_channel_close(ch);
    /* closed: the service is gone */
    {
        qrpc_client *c;
        int32_t sum;

        ck_assert_int_eq(kitchen_Kitchen_connect(n, "local", &c), 0);
        ck_assert_int_eq(kitchen_Kitchen_add(c, 1, 2, &sum), QRPC_ENOSERVICE);
        qrpc_client_destroy(c);
    }
    qrpc_node_destroy(n);
}
END_TEST

/* Requests still queued when the channel closes are answered QRPC_ECLOSED. */
static atomic_int ch_async_status;
static atomic_int ch_async_calls;

static void ch_async_done(int status, kitchen_Kitchen_add_reply *reply, void *arg)
{
    (void)reply;
    (void)arg;
    atomic_store(&ch_async_status, status);
    atomic_fetch_add(&ch_async_calls, 1);
}

START_TEST(channel_close_answers_queued)
{
    qrpc_node *n;
    qrpc_channel *ch;
    qrpc_client *c;
    qrpc_request *r;

    atomic_init(&ch_async_status, 12345);
    atomic_init(&ch_async_calls, 0);
    ck_assert_int_eq(qrpc_node_create(NULL, &n), 0);
    ck_assert_int_eq(qrpc_channel_open(n, &kitchen_Kitchen_desc, &ch), 0);
    ck_assert_int_eq(kitchen_Kitchen_connect(n, "local", &c), 0);
    /* two calls queued; one taken and answered after the close */
    ck_assert_int_eq(kitchen_Kitchen_add_async(c, 1, 2, ch_async_done, NULL), 0);
    ck_assert_int_eq(kitchen_Kitchen_add_async(c, 3, 4, ch_async_done, NULL), 0);
    ck_assert_int_eq(atomic_load(&ch_async_calls), 0);
    ck_assert_int_eq(qrpc_recv_request(ch, 0, &r), 0);
    qrpc_channel_close(ch);
    ck_assert_int_eq(atomic_load(&ch_async_calls), 1);
    ck_assert_int_eq(atomic_load(&ch_async_status), QRPC_ECLOSED);
    {
        qrpc_buf out = { NULL, 0, 0 };

        qrpc_put_i32(&out, 3);
        ck_assert_int_eq(qrpc_send_response(r, 0, &out), 0);
    }
    ck_assert_int_eq(atomic_load(&ch_async_calls), 2);
    ck_assert_int_eq(atomic_load(&ch_async_status), 0);
    qrpc_client_destroy(c);
    qrpc_node_destroy(n);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("channel");
    TCase *tc = tcase_create("channel");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, channel_local);
    tcase_add_test(tc, channel_tcp);
    tcase_add_test(tc, channel_recv_timeout_and_close);
    tcase_add_test(tc, channel_close_answers_queued);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
