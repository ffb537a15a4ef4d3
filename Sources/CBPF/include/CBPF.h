#ifndef CBPF_H
#define CBPF_H
/* libbpf shim for the Datapath module. */
#include <stdint.h>
#endif
