// SPDX-License-Identifier: GPL-2.0
/* kspm drift watcher: syscall and scheduler tracepoints, filtered in the kernel to the files and
 * component processes the agent's checks read, reported through a ring buffer. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "drift.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before load: the agent's own accesses are never reported. */
const volatile __u32 agent_tgid = 0;

/* Absolute host paths and plain file names the checks read. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, char[KSPM_PATH_MAX]);
	__type(value, __u8);
} watched SEC(".maps");

/* The first 16 bytes (zero-padded) of every key of `watched`: a cheap first filter, so that the
 * full 256-byte read and hash only happen for likely matches. */
struct prefix16 {
	__u64 lo;
	__u64 hi;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct prefix16);
	__type(value, __u8);
} watched_prefixes SEC(".maps");

/* Inode numbers of the watched files: a descriptor's file matches whatever name or hard link
 * it was opened through. Keyed by number only (a number equal on another file system costs one
 * needless re-check in user space). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u8);
} watched_inodes SEC(".maps");

/* comm values of component processes (kubelet, kube-apiserver, ...). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, char[KSPM_COMM_LEN]);
	__type(value, __u8);
} watched_comms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Events that did not fit in the ring buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Scratch space for building an event and a lookup key (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kspm_drift_event);
} scratch SEC(".maps");

struct path_key {
	char name[KSPM_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_key);
} scratch_key SEC(".maps");

#define AT_FDCWD_VALUE -100
#define O_WRITE_MASK (01 | 02 | 0100 | 01000) /* O_WRONLY | O_RDWR | O_CREAT | O_TRUNC */

static __always_inline struct kspm_drift_event *scratch_event(void)
{
	__u32 zero = 0;
	struct kspm_drift_event *e = bpf_map_lookup_elem(&scratch, &zero);

	if (!e)
		return NULL;
	__builtin_memset(e->path, 0, sizeof(e->path));
	return e;
}

static __always_inline int emit(struct kspm_drift_event *e, __u32 op, __u32 match, int dirfd,
				__u64 flags, __u64 ino)
{
	struct kspm_drift_event *out;
	__u64 id = bpf_get_current_pid_tgid();

	out = bpf_ringbuf_reserve(&events, sizeof(*out), 0);
	if (!out) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);

		if (n)
			*n += 1;
		return 0;
	}
	out->version = KSPM_DRIFT_EVENT_VERSION;
	out->op = op;
	out->match = match;
	out->pid = id >> 32;
	out->uid = (__u32)bpf_get_current_uid_gid();
	out->dirfd = dirfd;
	out->flags = flags;
	out->ts_ns = bpf_ktime_get_ns();
	out->ino = ino;
	bpf_get_current_comm(out->comm, sizeof(out->comm));
	__builtin_memcpy(out->path, e->path, sizeof(out->path));
	bpf_ringbuf_submit(out, 0);
	return 0;
}

static __always_inline int is_self(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == agent_tgid;
}

/* A path argument in user memory. Absolute paths match whole. A relative path's directory is
 * the caller's cwd or dirfd, which the kernel cannot cheaply turn into a path here; instead the
 * agent also watches every suffix of each watched path that starts at a component
 * ("kubelet/config.yaml", "config.yaml"), so a relative path matches whole once its leading "./"
 * and "../" are skipped. User space resolves it from /proc/<pid>/{cwd,fd}. */
#define KSPM_MAX_DOT_PREFIXES 6

static __always_inline int check_path(__u32 op, const char *upath, int dirfd, __u64 flags)
{
	struct kspm_drift_event *e;
	struct path_key *key;
	char head[sizeof(struct prefix16) + 1] = {};
	__u32 zero = 0, skip = 0;
	int i;

	if (!upath || is_self())
		return 0;
	if (bpf_probe_read_user_str(head, sizeof(head), upath) <= 0)
		return 0;
	if (head[0] == '/') {
		if (!bpf_map_lookup_elem(&watched_prefixes, head))
			return 0;
		e = scratch_event();
		if (!e)
			return 0;
		if (bpf_probe_read_user_str(e->path, sizeof(e->path), upath) <= 0)
			return 0;
		if (!bpf_map_lookup_elem(&watched, e->path))
			return 0;
		return emit(e, op, KSPM_MATCH_PATH, dirfd, flags, 0);
	}
	for (i = 0; i < KSPM_MAX_DOT_PREFIXES; i++) {
		char dots[3] = {};

		if (bpf_probe_read_user(dots, sizeof(dots), upath + skip))
			break;
		if (dots[0] == '.' && dots[1] == '/')
			skip += 2;
		else if (dots[0] == '.' && dots[1] == '.' && dots[2] == '/')
			skip += 3;
		else
			break;
	}
	if (skip) {
		__builtin_memset(head, 0, sizeof(head));
		if (bpf_probe_read_user_str(head, sizeof(head), upath + skip) <= 0)
			return 0;
	}
	if (!bpf_map_lookup_elem(&watched_prefixes, head))
		return 0;
	e = scratch_event();
	key = bpf_map_lookup_elem(&scratch_key, &zero);
	if (!e || !key)
		return 0;
	__builtin_memset(key->name, 0, sizeof(key->name));
	if (bpf_probe_read_user_str(key->name, sizeof(key->name), upath + skip) <= 0)
		return 0;
	if (!bpf_map_lookup_elem(&watched, key->name))
		return 0;
	/* The event carries the path as given, for user space to resolve. */
	if (bpf_probe_read_user_str(e->path, sizeof(e->path), upath) <= 0)
		return 0;
	return emit(e, op, KSPM_MATCH_RELATIVE, dirfd, flags, 0);
}

/* A descriptor argument: the file behind it matches by inode (any link), else by the name of
 * its dentry. */
static __always_inline int check_fd(__u32 op, int fd, __u64 flags)
{
	struct task_struct *task;
	struct file **fds;
	struct file *f = NULL;
	struct kspm_drift_event *e;
	const unsigned char *name;
	unsigned int max;
	__u64 ino;

	if (fd < 0 || is_self())
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	fds = BPF_CORE_READ(task, files, fdt, fd);
	max = BPF_CORE_READ(task, files, fdt, max_fds);
	if ((unsigned int)fd >= max)
		return 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	name = BPF_CORE_READ(f, f_path.dentry, d_name.name);
	ino = BPF_CORE_READ(f, f_inode, i_ino);
	if (bpf_map_lookup_elem(&watched_inodes, &ino)) {
		e = scratch_event();
		if (!e)
			return 0;
		bpf_probe_read_kernel_str(e->path, sizeof(e->path), name);
		return emit(e, op, KSPM_MATCH_INODE, fd, flags, ino);
	}
	{
		char head[sizeof(struct prefix16) + 1] = {};

		if (bpf_probe_read_kernel_str(head, sizeof(head), name) <= 0)
			return 0;
		if (!bpf_map_lookup_elem(&watched_prefixes, head))
			return 0;
	}
	e = scratch_event();
	if (!e)
		return 0;
	if (bpf_probe_read_kernel_str(e->path, sizeof(e->path), name) <= 0)
		return 0;
	if (!bpf_map_lookup_elem(&watched, e->path))
		return 0;
	return emit(e, op, KSPM_MATCH_FD_NAME, fd, flags, ino);
}

#define ARG(ctx, n) ((ctx)->args[n])

SEC("tracepoint/syscalls/sys_enter_chmod")
int chmod_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_path(KSPM_OP_CHMOD, (const char *)ARG(ctx, 0), AT_FDCWD_VALUE, ARG(ctx, 1));
}

SEC("tracepoint/syscalls/sys_enter_fchmodat")
int fchmodat_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_path(KSPM_OP_CHMOD, (const char *)ARG(ctx, 1), (int)ARG(ctx, 0), ARG(ctx, 2));
}

SEC("tracepoint/syscalls/sys_enter_fchmodat2")
int fchmodat2_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_path(KSPM_OP_CHMOD, (const char *)ARG(ctx, 1), (int)ARG(ctx, 0), ARG(ctx, 2));
}

SEC("tracepoint/syscalls/sys_enter_fchmod")
int fchmod_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_fd(KSPM_OP_CHMOD, (int)ARG(ctx, 0), ARG(ctx, 1));
}

SEC("tracepoint/syscalls/sys_enter_chown")
int chown_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_path(KSPM_OP_CHOWN, (const char *)ARG(ctx, 0), AT_FDCWD_VALUE, 0);
}

SEC("tracepoint/syscalls/sys_enter_lchown")
int lchown_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_path(KSPM_OP_CHOWN, (const char *)ARG(ctx, 0), AT_FDCWD_VALUE, 0);
}

SEC("tracepoint/syscalls/sys_enter_fchownat")
int fchownat_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_path(KSPM_OP_CHOWN, (const char *)ARG(ctx, 1), (int)ARG(ctx, 0), 0);
}

SEC("tracepoint/syscalls/sys_enter_fchown")
int fchown_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_fd(KSPM_OP_CHOWN, (int)ARG(ctx, 0), 0);
}

SEC("tracepoint/syscalls/sys_enter_open")
int open_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 flags = ARG(ctx, 1);

	if (!(flags & O_WRITE_MASK))
		return 0;
	return check_path(KSPM_OP_OPEN_WRITE, (const char *)ARG(ctx, 0), AT_FDCWD_VALUE, flags);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int openat_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 flags = ARG(ctx, 2);

	if (!(flags & O_WRITE_MASK))
		return 0;
	return check_path(KSPM_OP_OPEN_WRITE, (const char *)ARG(ctx, 1), (int)ARG(ctx, 0), flags);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int openat2_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 flags = 0;

	/* struct open_how starts with the u64 flags. */
	if (bpf_probe_read_user(&flags, sizeof(flags), (const void *)ARG(ctx, 2)))
		return 0;
	if (!(flags & O_WRITE_MASK))
		return 0;
	return check_path(KSPM_OP_OPEN_WRITE, (const char *)ARG(ctx, 1), (int)ARG(ctx, 0), flags);
}

SEC("tracepoint/syscalls/sys_enter_rename")
int rename_enter(struct trace_event_raw_sys_enter *ctx)
{
	check_path(KSPM_OP_RENAME, (const char *)ARG(ctx, 1), AT_FDCWD_VALUE, 0);
	return check_path(KSPM_OP_RENAME, (const char *)ARG(ctx, 0), AT_FDCWD_VALUE, 1);
}

SEC("tracepoint/syscalls/sys_enter_renameat")
int renameat_enter(struct trace_event_raw_sys_enter *ctx)
{
	check_path(KSPM_OP_RENAME, (const char *)ARG(ctx, 3), (int)ARG(ctx, 2), 0);
	return check_path(KSPM_OP_RENAME, (const char *)ARG(ctx, 1), (int)ARG(ctx, 0), 1);
}

SEC("tracepoint/syscalls/sys_enter_renameat2")
int renameat2_enter(struct trace_event_raw_sys_enter *ctx)
{
	check_path(KSPM_OP_RENAME, (const char *)ARG(ctx, 3), (int)ARG(ctx, 2), 0);
	return check_path(KSPM_OP_RENAME, (const char *)ARG(ctx, 1), (int)ARG(ctx, 0), 1);
}

SEC("tracepoint/syscalls/sys_enter_unlink")
int unlink_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_path(KSPM_OP_UNLINK, (const char *)ARG(ctx, 0), AT_FDCWD_VALUE, 0);
}

SEC("tracepoint/syscalls/sys_enter_unlinkat")
int unlinkat_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_path(KSPM_OP_UNLINK, (const char *)ARG(ctx, 1), (int)ARG(ctx, 0), 0);
}

SEC("tracepoint/syscalls/sys_enter_link")
int link_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_path(KSPM_OP_LINK, (const char *)ARG(ctx, 0), AT_FDCWD_VALUE, 0);
}

SEC("tracepoint/syscalls/sys_enter_linkat")
int linkat_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_path(KSPM_OP_LINK, (const char *)ARG(ctx, 1), (int)ARG(ctx, 0), 0);
}

SEC("tracepoint/syscalls/sys_enter_truncate")
int truncate_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_path(KSPM_OP_TRUNCATE, (const char *)ARG(ctx, 0), AT_FDCWD_VALUE, 0);
}

SEC("tracepoint/syscalls/sys_enter_ftruncate")
int ftruncate_enter(struct trace_event_raw_sys_enter *ctx)
{
	return check_fd(KSPM_OP_TRUNCATE, (int)ARG(ctx, 0), 0);
}

static __always_inline int check_comm(__u32 op, const char *filename_kernel)
{
	struct kspm_drift_event *e;
	char comm[KSPM_COMM_LEN] = {};

	if (is_self())
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
	if (!bpf_map_lookup_elem(&watched_comms, comm))
		return 0;
	e = scratch_event();
	if (!e)
		return 0;
	if (filename_kernel)
		bpf_probe_read_kernel_str(e->path, sizeof(e->path), filename_kernel);
	return emit(e, op, KSPM_MATCH_COMM, AT_FDCWD_VALUE, 0, 0);
}

SEC("tracepoint/sched/sched_process_exec")
int exec_event(struct trace_event_raw_sched_process_exec *ctx)
{
	unsigned int loc = BPF_CORE_READ(ctx, __data_loc_filename) & 0xFFFF;

	return check_comm(KSPM_OP_EXEC, (const char *)ctx + loc);
}

SEC("tracepoint/sched/sched_process_exit")
int exit_event(struct trace_event_raw_sched_process_template *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();

	if ((__u32)id != (id >> 32))
		return 0; /* a thread, not the process */
	return check_comm(KSPM_OP_EXIT, NULL);
}
