/* calc_impl.h - the calc example's handlers and their state. */
#ifndef CALC_IMPL_H
#define CALC_IMPL_H

#include <pthread.h>
#include <stdint.h>

#include "calc.h"

typedef struct calc_state {
    pthread_mutex_t lock;
    int64_t total;
} calc_state;

extern const calc_Calc_handlers calc_handlers;

#endif
