#ifndef CNETLINK_H
#define CNETLINK_H
/* Kernel UAPI and libmnl helpers for the XFRM client. Swift never computes struct layout itself:
 * it uses the structs of linux/xfrm.h and the helpers below for what does not import (macros). */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
/* glibc first: it tells linux/in6.h (via libc-compat.h) not to redefine struct in6_addr. */
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <libmnl/libmnl.h>

/* NLMSG_ALIGN / NLA_ALIGN. */
static inline size_t cnl_nlmsg_align(size_t length) { return NLMSG_ALIGN(length); }
static inline size_t cnl_attr_align(size_t length) { return NLA_ALIGN(length); }
/* NLMSG_HDRLEN and NLA_HDRLEN. */
static inline size_t cnl_nlmsg_header_length(void) { return NLMSG_HDRLEN; }
static inline size_t cnl_attr_header_length(void) { return NLA_HDRLEN; }
/* MNL_SOCKET_BUFFER_SIZE (a page-sized receive buffer recommended by libmnl; dumps use more). */
static inline size_t cnl_socket_buffer_size(void) { return MNL_SOCKET_BUFFER_SIZE; }
/* SOL_NETLINK, which glibc defines only with _GNU_SOURCE in some versions. */
static inline int cnl_sol_netlink(void) { return 270; }

/* Opens a NETLINK_XFRM socket (SOCK_CLOEXEC). With a non-NULL netns_path, the socket is created inside that
 * network namespace: the calling thread enters the namespace (setns), creates the socket and returns to its
 * original namespace, all synchronously before returning. Returns the fd, or -1 with errno set; on failure
 * *failed_step names the call that failed ("open netns", "setns", "socket", "setns back"). */
int cnl_xfrm_socket_open(const char *netns_path, const char **failed_step);

/* Appends a netlink header at buffer (zeroed, length NLMSG_HDRLEN) and returns it. */
static inline struct nlmsghdr *cnl_put_header(void *buffer, uint16_t type, uint16_t flags, uint32_t seq) {
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buffer);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = flags;
    nlh->nlmsg_seq = seq;
    return nlh;
}

/* Appends an attribute whose payload is `head` followed by `tail` (e.g. struct xfrm_algo_aead + key bytes,
 * or struct xfrm_replay_state_esn + bitmap), padded to NLA_ALIGN. The caller ensures the buffer has room. */
static inline void cnl_attr_put2(struct nlmsghdr *nlh, uint16_t type, const void *head, size_t head_length,
                                 const void *tail, size_t tail_length) {
    struct nlattr *attr = mnl_nlmsg_get_payload_tail(nlh);
    size_t payload = head_length + tail_length;
    char *data = (char *)attr + NLA_HDRLEN;
    attr->nla_type = type;
    attr->nla_len = (uint16_t)(NLA_HDRLEN + payload);
    if (head_length) memcpy(data, head, head_length);
    if (tail_length) {
        if (tail) memcpy(data + head_length, tail, tail_length);
        else memset(data + head_length, 0, tail_length);
    }
    if (NLA_ALIGN(payload) != payload) memset(data + payload, 0, NLA_ALIGN(payload) - payload);
    nlh->nlmsg_len += NLA_ALIGN(attr->nla_len);
}

/* Index of attributes by type, filled by cnl_attr_index. Types above CNL_ATTR_MAX are ignored. */
#define CNL_ATTR_MAX 64
struct cnl_attr_table {
    const struct nlattr *attrs[CNL_ATTR_MAX + 1];
};
/* Indexes the attributes of nlh that follow `offset` bytes of family header. Returns 0, or -1 if the
 * attribute stream is malformed (an attribute overruns the message). */
int cnl_attr_index(const struct nlmsghdr *nlh, size_t offset, struct cnl_attr_table *table);
/* Same for the attributes nested inside a payload (start, length). */
int cnl_attr_index_payload(const void *payload, size_t length, struct cnl_attr_table *table);
static inline const struct nlattr *cnl_attr_get(const struct cnl_attr_table *table, uint16_t type) {
    return type <= CNL_ATTR_MAX ? table->attrs[type] : NULL;
}

/* For an NLMSG_ERROR message: the extended-ack text (NLMSGERR_ATTR_MSG), or NULL if there is none.
 * Handles capped (NETLINK_CAP_ACK) and uncapped acks. */
const char *cnl_ext_ack_message(const struct nlmsghdr *nlh);
/* For an NLMSG_ERROR message: the error field (0 for an ack, -errno for an error). */
static inline int cnl_error_code(const struct nlmsghdr *nlh) {
    const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
    return err->error;
}
#endif
