/* SPDX-License-Identifier: Apache-2.0 */
/* The event layout shared by drift.bpf.c and the agent (agent/src/kspm/agent/drift/). */
#ifndef KSPM_BPF_DRIFT_H
#define KSPM_BPF_DRIFT_H

#define KSPM_DRIFT_EVENT_VERSION 2
#define KSPM_PATH_MAX 256
#define KSPM_COMM_LEN 16

/* What happened. */
enum kspm_drift_op {
  KSPM_OP_CHMOD = 1,
  KSPM_OP_CHOWN = 2,
  KSPM_OP_OPEN_WRITE = 3, /* open with O_WRONLY, O_RDWR, O_TRUNC or O_CREAT */
  KSPM_OP_RENAME = 4,     /* path is the destination (or the source if that is watched) */
  KSPM_OP_UNLINK = 5,
  KSPM_OP_TRUNCATE = 6,
  KSPM_OP_EXEC = 7, /* a watched component binary started; path is the file executed */
  KSPM_OP_EXIT = 8, /* a watched component's process ended */
  KSPM_OP_LINK = 9, /* a new hard link to a watched file; path is the existing name */
};

/* How path was matched: an absolute path; a relative path (to the caller's cwd or dirfd) by its
 * last component; the name of the file behind a descriptor (fchmod, fchown, ftruncate); the
 * inode behind a descriptor, whatever link it was opened through. */
enum kspm_match {
  KSPM_MATCH_PATH = 1,
  KSPM_MATCH_RELATIVE = 2,
  KSPM_MATCH_FD_NAME = 3,
  KSPM_MATCH_COMM = 4,
  KSPM_MATCH_INODE = 5,
};

struct kspm_drift_event {
  unsigned int version; /* KSPM_DRIFT_EVENT_VERSION */
  unsigned int op;      /* enum kspm_drift_op */
  unsigned int match;   /* enum kspm_match */
  unsigned int pid;     /* thread group id of the caller */
  unsigned int uid;
  int dirfd;                /* for *at calls, the directory descriptor (AT_FDCWD = -100); for
                               descriptor calls, the descriptor */
  unsigned long long flags; /* open flags, or the new mode for chmod */
  unsigned long long ts_ns; /* bpf_ktime_get_ns() */
  unsigned long long ino;   /* for descriptor calls, the file's inode number; else 0 */
  char comm[KSPM_COMM_LEN];
  char path[KSPM_PATH_MAX];
};

#endif /* KSPM_BPF_DRIFT_H */
