/*
 * calc_impl.c - the server side of the calc example: the handlers of
 * service calc.Calc and the state they share.
 */
#include <pthread.h>

#include "calc.h"
#include "calc_impl.h"

static int calc_add(qrpc_ctx *ctx, int32_t a, int32_t b, int32_t *result)
{
    int64_t sum = (int64_t)a + b;

    (void)ctx;
    if (sum > INT32_MAX || sum < INT32_MIN)
        return calc_CalcError_OVERFLOW;
    *result = (int32_t)sum;
    return 0;
}

static int calc_increment_by(qrpc_ctx *ctx, int64_t n, int64_t *result)
{
    calc_state *st = qrpc_ctx_state(ctx);

    pthread_mutex_lock(&st->lock);
    st->total += n;
    *result = st->total;
    pthread_mutex_unlock(&st->lock);
    return 0;
}

const calc_Calc_handlers calc_handlers = {
    .add = calc_add,
    .incrementBy = calc_increment_by,
};
