#ifndef CRDKAFKA_SHIM_H
#define CRDKAFKA_SHIM_H

// The public client API and the mock cluster that the Kafka tests run on.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#endif
