/*
 * Map layouts shared by the BPF program (bpf/encrypt.c) and the Datapath module.
 * One definition, compiled into both sides, so key and value layouts cannot drift.
 */
#ifndef IPSEC_MAPS_H
#define IPSEC_MAPS_H

#include <linux/types.h>

/* Map names: libbpf pins each map at <pin dir>/<name>. */
#define IPSEC_MAP_ENCRYPT_STATE "encrypt_state"
#define IPSEC_MAP_PEER_V4 "peer_v4"
#define IPSEC_MAP_PEER_V6 "peer_v6"
#define IPSEC_MAP_COUNTERS "encrypt_counters"
#define IPSEC_PROGRAM_NAME "ipsec_encrypt_select"

/* Capacity of each peer LPM trie (peer pod CIDRs per family). */
#define IPSEC_MAX_PEER_PREFIXES 16384

/* Mark layout: 0xE00 | spi << 12 | node_id << 16 (mask 0xFFFFFF00). */
#define IPSEC_MARK_ENCRYPT 0xE00u
#define IPSEC_MARK_SPI_SHIFT 12
#define IPSEC_MARK_NODE_SHIFT 16

/* encrypt_state, the one entry of an array map: the local key ID, 0 = encryption not ready. */
struct ipsec_encrypt_state {
    __u32 local_spi;
};

/* LPM trie keys: prefix length in host order, address in network order. */
struct ipsec_lpm_v4_key {
    __u32 prefixlen;
    __u8 addr[4];
};

struct ipsec_lpm_v6_key {
    __u32 prefixlen;
    __u8 addr[16];
};

/* What a peer pod CIDR maps to: the peer node's ID and the key ID it advertised. */
struct ipsec_peer_value {
    __u16 node_id;
    __u8 spi;
    __u8 reserved;
};

/* Indexes into encrypt_counters (a per-CPU array of __u64). */
enum ipsec_counter {
    IPSEC_COUNTER_MARKED = 0,    /* marked with a usable key ID */
    IPSEC_COUNTER_UNMARKED = 1,  /* not IP, or no peer entry: left alone */
    IPSEC_COUNTER_NOT_READY = 2, /* peer entry but no usable key: marked with SPI 0, dropped by the OUT block policy */
    IPSEC_COUNTER_COUNT = 3,
};

#endif
