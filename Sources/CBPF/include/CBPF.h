#ifndef CBPF_H
#define CBPF_H
/*
 * libbpf shim for the Datapath module. Every function returns 0 (or a non-negative fd/count) on
 * success and a negative errno on failure, so Swift never reads errno after the fact. Messages
 * libbpf prints while a call runs are captured per thread: read them with cbpf_take_messages().
 */
#include <stddef.h>
#include <stdint.h>
#include <linux/bpf.h> /* BPF_ANY, BPF_NOEXIST, BPF_EXIST */

#include "ipsec_maps.h"

/* A loaded (or loading) BPF object and the verifier log buffer that must outlive the load. */
typedef struct cbpf_object cbpf_object;

/* Opens an ELF object from memory; maps with LIBBPF_PIN_BY_NAME are pinned/reused under pin_root.
 * Returns NULL and sets *error (negative errno) on failure. */
cbpf_object *cbpf_object_open(const void *buffer, size_t size, const char *name, const char *pin_root, int *error);

/* Creates (or reuses pinned) maps and loads the programs. On a verifier rejection the kernel's log
 * is in cbpf_object_log(). */
int cbpf_object_load(cbpf_object *object);

/* The kernel verifier log of the last load (empty string if none). */
const char *cbpf_object_log(const cbpf_object *object);

void cbpf_object_close(cbpf_object *object);

/* File descriptors owned by the object (valid until cbpf_object_close). */
int cbpf_object_program_fd(const cbpf_object *object, const char *program_name);
int cbpf_object_map_fd(const cbpf_object *object, const char *map_name);

/* Program id of a program fd (as shown by bpftool / tc). */
int cbpf_program_id(int program_fd, uint32_t *id);

/* Map operations on any map fd. flags: BPF_ANY / BPF_NOEXIST / BPF_EXIST. */
int cbpf_map_update(int map_fd, const void *key, const void *value, uint64_t flags);
int cbpf_map_lookup(int map_fd, const void *key, void *value);
int cbpf_map_delete(int map_fd, const void *key);
/* Next key after `key` (NULL: the first); -ENOENT at the end. */
int cbpf_map_next_key(int map_fd, const void *key, void *next_key);
/* Up to *count entries after the key in in_batch (NULL: from the start) into keys/values, in one system call;
 * out_batch receives the key to continue from. Returns 0, -ENOENT when the map is exhausted (*count entries were
 * still returned), or another -errno (-EOPNOTSUPP/-ENOTSUPP/-EINVAL: the map type has no batch operations). */
int cbpf_map_lookup_batch(int map_fd, void *in_batch, void *out_batch, void *keys, void *values, unsigned int *count);

/* Number of possible CPUs: the value count of a per-CPU map lookup. */
int cbpf_possible_cpus(void);

/* tc clsact ingress: creates the clsact qdisc if missing and attaches (or replaces) the filter
 * identified by handle/priority. Acts in the calling thread's network namespace. */
int cbpf_tc_attach_ingress(int ifindex, int program_fd, uint32_t handle, uint32_t priority);
/* Removes only our filter; leaves the clsact qdisc (other programs may use it). */
int cbpf_tc_detach_ingress(int ifindex, uint32_t handle, uint32_t priority);
/* Program id attached at handle/priority; -ENOENT if none. */
int cbpf_tc_query_ingress(int ifindex, uint32_t handle, uint32_t priority, uint32_t *program_id);

/* BPF_PROG_TEST_RUN on a tc program with an Ethernet frame, `repeat` times (0 counts as 1): returns the
 * verdict and skb->mark after the (last) run and the kernel-measured average duration per run in ns. */
int cbpf_tc_test_run(int program_fd, const void *frame, uint32_t size, uint32_t initial_mark, uint32_t repeat,
                     uint32_t *verdict, uint32_t *mark, uint32_t *duration_ns);

/* 1 if path is on a bpf filesystem, 0 if not, negative errno if it cannot be inspected. */
int cbpf_is_bpffs(const char *path);

/* Copies (and clears) the libbpf warnings captured on this thread; returns the length copied. */
size_t cbpf_take_messages(char *buffer, size_t size);

#endif
