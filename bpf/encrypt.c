// SPDX-License-Identifier: GPL-2.0
/*
 * ipsec_encrypt_select: tc (clsact ingress) program that picks the IPsec key for egress to a peer.
 *
 * For an IPv4/IPv6 packet whose destination lies in a peer pod CIDR (peer_v4 / peer_v6 LPM tries),
 * it sets skb->mark = 0xE00 | spi << 12 | node_id << 16, where spi is the older of the local key ID
 * (encrypt_state) and the key ID the peer advertised, on the 1…15 ring: b is newer than a when
 * (b - a) mod 15 is in 1…7. If the local key ID is 0 (not ready) or the peer's is out of range, spi is
 * 0: the agent's default-drop OUT policy (mark 0xE00/0xF00, action block) catches the packet, so
 * nothing leaves in plaintext. No peer entry: the packet is left unmarked. Always returns TC_ACT_OK.
 * See docs/datapath.md.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ipsec_maps.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct ipsec_encrypt_state);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} encrypt_state SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, IPSEC_MAX_PEER_PREFIXES);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct ipsec_lpm_v4_key);
    __type(value, struct ipsec_peer_value);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} peer_v4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, IPSEC_MAX_PEER_PREFIXES);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct ipsec_lpm_v6_key);
    __type(value, struct ipsec_peer_value);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} peer_v6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, IPSEC_COUNTER_COUNT);
    __type(key, __u32);
    __type(value, __u64);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} encrypt_counters SEC(".maps");

static __always_inline void count(__u32 index)
{
    __u64 *value = bpf_map_lookup_elem(&encrypt_counters, &index);
    if (value)
        *value += 1; /* per-CPU slot: no other writer */
}

static __always_inline int valid_spi(__u32 spi)
{
    return spi >= 1 && spi <= 15;
}

/* The older of two key IDs on the 1…15 ring; b is newer than a when (b - a) mod 15 is in 1…7. */
static __always_inline __u32 older_spi(__u32 a, __u32 b)
{
    __u32 steps = (b + 15 - a) % 15;
    return (steps >= 1 && steps <= 7) ? a : b;
}

static __always_inline struct ipsec_peer_value *lookup_peer(struct __sk_buff *skb)
{
    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        struct ipsec_lpm_v4_key key = { .prefixlen = 32 };
        if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, daddr), key.addr, sizeof(key.addr)) < 0)
            return NULL;
        return bpf_map_lookup_elem(&peer_v4, &key);
    }
    if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        struct ipsec_lpm_v6_key key = { .prefixlen = 128 };
        if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct ipv6hdr, daddr), key.addr, sizeof(key.addr)) < 0)
            return NULL;
        return bpf_map_lookup_elem(&peer_v6, &key);
    }
    return NULL;
}

SEC("tc")
int ipsec_encrypt_select(struct __sk_buff *skb)
{
    struct ipsec_peer_value *peer = lookup_peer(skb);
    if (!peer) {
        count(IPSEC_COUNTER_UNMARKED);
        return TC_ACT_OK;
    }

    __u32 zero = 0;
    struct ipsec_encrypt_state *state = bpf_map_lookup_elem(&encrypt_state, &zero);
    __u32 local = state ? state->local_spi : 0;
    __u32 remote = peer->spi;
    __u32 spi = 0;

    if (valid_spi(local) && valid_spi(remote)) {
        spi = older_spi(local, remote);
        count(IPSEC_COUNTER_MARKED);
    } else {
        count(IPSEC_COUNTER_NOT_READY);
    }

    skb->mark = IPSEC_MARK_ENCRYPT | spi << IPSEC_MARK_SPI_SHIFT | (__u32)peer->node_id << IPSEC_MARK_NODE_SHIFT;
    return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
