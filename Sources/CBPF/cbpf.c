#include "CBPF.h"

#include <errno.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define CBPF_BPF_FS_MAGIC 0xcafe4a11
#define CBPF_LOG_SIZE (256 * 1024)
#define CBPF_MESSAGES_SIZE 4096

struct cbpf_object {
    struct bpf_object *object;
    char *log;
};

/* libbpf messages (warnings only) captured per thread, so an error can carry them. */
static _Thread_local char captured[CBPF_MESSAGES_SIZE];
static _Thread_local size_t captured_length;
static pthread_once_t print_once = PTHREAD_ONCE_INIT;

static int capture_print(enum libbpf_print_level level, const char *format, va_list args)
{
    if (level != LIBBPF_WARN)
        return 0;
    if (captured_length >= sizeof(captured) - 1)
        return 0;
    int written = vsnprintf(captured + captured_length, sizeof(captured) - captured_length, format, args);
    if (written > 0) {
        captured_length += (size_t)written;
        if (captured_length > sizeof(captured) - 1)
            captured_length = sizeof(captured) - 1;
    }
    return written;
}

static void install_print(void)
{
    libbpf_set_print(capture_print);
}

size_t cbpf_take_messages(char *buffer, size_t size)
{
    if (size == 0)
        return 0;
    size_t length = captured_length < size - 1 ? captured_length : size - 1;
    memcpy(buffer, captured, length);
    buffer[length] = '\0';
    captured_length = 0;
    captured[0] = '\0';
    return length;
}

cbpf_object *cbpf_object_open(const void *buffer, size_t size, const char *name, const char *pin_root, int *error)
{
    pthread_once(&print_once, install_print);
    captured_length = 0;

    cbpf_object *handle = calloc(1, sizeof(*handle));
    char *log = calloc(1, CBPF_LOG_SIZE);
    if (!handle || !log) {
        free(handle);
        free(log);
        *error = -ENOMEM;
        return NULL;
    }
    LIBBPF_OPTS(bpf_object_open_opts, options,
        .object_name = name,
        .pin_root_path = pin_root,
        .kernel_log_buf = log,
        .kernel_log_size = CBPF_LOG_SIZE,
        .kernel_log_level = 0);
    struct bpf_object *object = bpf_object__open_mem(buffer, size, &options);
    if (!object) {
        *error = -errno;
        free(log);
        free(handle);
        return NULL;
    }
    handle->object = object;
    handle->log = log;
    return handle;
}

int cbpf_object_load(cbpf_object *handle)
{
    captured_length = 0;
    return bpf_object__load(handle->object);
}

const char *cbpf_object_log(const cbpf_object *handle)
{
    return handle->log;
}

void cbpf_object_close(cbpf_object *handle)
{
    if (!handle)
        return;
    bpf_object__close(handle->object);
    free(handle->log);
    free(handle);
}

int cbpf_object_program_fd(const cbpf_object *handle, const char *program_name)
{
    struct bpf_program *program = bpf_object__find_program_by_name(handle->object, program_name);
    if (!program)
        return -ENOENT;
    return bpf_program__fd(program);
}

int cbpf_object_map_fd(const cbpf_object *handle, const char *map_name)
{
    struct bpf_map *map = bpf_object__find_map_by_name(handle->object, map_name);
    if (!map)
        return -ENOENT;
    return bpf_map__fd(map);
}

int cbpf_program_id(int program_fd, uint32_t *id)
{
    struct bpf_prog_info info;
    uint32_t length = sizeof(info);
    memset(&info, 0, sizeof(info));
    int result = bpf_obj_get_info_by_fd(program_fd, &info, &length);
    if (result < 0)
        return result;
    *id = info.id;
    return 0;
}

int cbpf_map_update(int map_fd, const void *key, const void *value, uint64_t flags)
{
    return bpf_map_update_elem(map_fd, key, value, flags);
}

int cbpf_map_lookup(int map_fd, const void *key, void *value)
{
    return bpf_map_lookup_elem(map_fd, key, value);
}

int cbpf_map_delete(int map_fd, const void *key)
{
    return bpf_map_delete_elem(map_fd, key);
}

int cbpf_map_next_key(int map_fd, const void *key, void *next_key)
{
    return bpf_map_get_next_key(map_fd, key, next_key);
}

int cbpf_map_lookup_batch(int map_fd, void *in_batch, void *out_batch, void *keys, void *values, unsigned int *count)
{
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    __u32 n = *count;
    int err = bpf_map_lookup_batch(map_fd, in_batch, out_batch, keys, values, &n, &opts);
    *count = n;
    return err < 0 ? err : 0;
}

int cbpf_possible_cpus(void)
{
    return libbpf_num_possible_cpus();
}

int cbpf_tc_attach_ingress(int ifindex, int program_fd, uint32_t handle, uint32_t priority)
{
    captured_length = 0;
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    int result = bpf_tc_hook_create(&hook);
    if (result < 0 && result != -EEXIST)
        return result;
    LIBBPF_OPTS(bpf_tc_opts, options,
        .prog_fd = program_fd,
        .handle = handle,
        .priority = priority,
        .flags = BPF_TC_F_REPLACE);
    return bpf_tc_attach(&hook, &options);
}

int cbpf_tc_detach_ingress(int ifindex, uint32_t handle, uint32_t priority)
{
    captured_length = 0;
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    LIBBPF_OPTS(bpf_tc_opts, options, .handle = handle, .priority = priority);
    return bpf_tc_detach(&hook, &options);
}

int cbpf_tc_query_ingress(int ifindex, uint32_t handle, uint32_t priority, uint32_t *program_id)
{
    captured_length = 0;
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    LIBBPF_OPTS(bpf_tc_opts, options, .handle = handle, .priority = priority);
    int result = bpf_tc_query(&hook, &options);
    if (result < 0)
        return result;
    *program_id = options.prog_id;
    return 0;
}

int cbpf_tc_test_run(int program_fd, const void *frame, uint32_t size, uint32_t initial_mark, uint32_t repeat,
                     uint32_t *verdict, uint32_t *mark, uint32_t *duration_ns)
{
    struct __sk_buff context_in;
    struct __sk_buff context_out;
    memset(&context_in, 0, sizeof(context_in));
    memset(&context_out, 0, sizeof(context_out));
    context_in.mark = initial_mark;
    LIBBPF_OPTS(bpf_test_run_opts, options,
        .data_in = frame,
        .data_size_in = size,
        .ctx_in = &context_in,
        .ctx_size_in = sizeof(context_in),
        .ctx_out = &context_out,
        .ctx_size_out = sizeof(context_out),
        .repeat = repeat);
    int result = bpf_prog_test_run_opts(program_fd, &options);
    if (result < 0)
        return result;
    *verdict = options.retval;
    *mark = context_out.mark;
    *duration_ns = options.duration;
    return 0;
}

int cbpf_is_bpffs(const char *path)
{
    struct statfs fs;
    if (statfs(path, &fs) != 0)
        return -errno;
    return fs.f_type == CBPF_BPF_FS_MAGIC;
}
