#ifndef CNETLINK_H
#define CNETLINK_H
/* Kernel UAPI and libmnl helpers for the XFRM client. Swift never computes struct layout itself. */
#include <stdint.h>
#include <stddef.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <libmnl/libmnl.h>
#endif
