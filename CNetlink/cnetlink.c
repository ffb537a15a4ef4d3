#define _GNU_SOURCE
#include "CNetlink.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

int cnl_xfrm_socket_open(const char *netns_path, const char **failed_step) {
    *failed_step = NULL;
    if (netns_path == NULL) {
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_XFRM);
        if (fd < 0) *failed_step = "socket";
        return fd;
    }
    int original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (original < 0) { *failed_step = "open /proc/thread-self/ns/net"; return -1; }
    int target = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (target < 0) {
        int saved = errno; close(original); errno = saved;
        *failed_step = "open netns"; return -1;
    }
    if (setns(target, CLONE_NEWNET) != 0) {
        int saved = errno; close(target); close(original); errno = saved;
        *failed_step = "setns"; return -1;
    }
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_XFRM);
    int socket_errno = errno;
    if (setns(original, CLONE_NEWNET) != 0) {
        /* The thread is stuck in the wrong namespace: nothing sane can continue on it. */
        int saved = errno;
        if (fd >= 0) close(fd);
        close(target); close(original); errno = saved;
        *failed_step = "setns back";
        return -1;
    }
    close(target);
    close(original);
    if (fd < 0) { errno = socket_errno; *failed_step = "socket"; }
    return fd;
}

struct index_context { struct cnl_attr_table *table; };

static int index_attr(const struct nlattr *attr, void *data) {
    struct cnl_attr_table *table = data;
    uint16_t type = mnl_attr_get_type(attr);
    if (type <= CNL_ATTR_MAX) table->attrs[type] = attr;
    return MNL_CB_OK;
}

int cnl_attr_index(const struct nlmsghdr *nlh, size_t offset, struct cnl_attr_table *table) {
    memset(table, 0, sizeof(*table));
    if (mnl_nlmsg_get_payload_len(nlh) < offset) return -1;
    return mnl_attr_parse(nlh, (unsigned int)offset, index_attr, table) == MNL_CB_ERROR ? -1 : 0;
}

int cnl_attr_index_payload(const void *payload, size_t length, struct cnl_attr_table *table) {
    memset(table, 0, sizeof(*table));
    return mnl_attr_parse_payload(payload, length, index_attr, table) == MNL_CB_ERROR ? -1 : 0;
}

const char *cnl_ext_ack_message(const struct nlmsghdr *nlh) {
    if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return NULL;
    const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
    size_t offset = sizeof(*err);
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) offset += err->msg.nlmsg_len - sizeof(struct nlmsghdr);
    if (mnl_nlmsg_get_payload_len(nlh) < offset) return NULL;
    struct cnl_attr_table table;
    if (cnl_attr_index(nlh, offset, &table) != 0) return NULL;
    const struct nlattr *msg = table.attrs[NLMSGERR_ATTR_MSG];
    if (msg == NULL || mnl_attr_validate(msg, MNL_TYPE_NUL_STRING) < 0) return NULL;
    return mnl_attr_get_str(msg);
}
