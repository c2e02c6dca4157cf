/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dkmd is the loud part: it logs to stderr, which journald reads with the
 * "<N>" priority prefixes when run as a unit. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <syslog.h>

void log_setup(void);
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* A line about something a peer did (a malformed or refused request, a
 * connection over its limit): at most RATELIMIT_BURST per uid in each
 * RATELIMIT_INTERVAL_USEC, and then "suppressed K similar messages from
 * uid U" once the interval has ended.  Returns whether it was written. */
bool log_peer(uid_t uid, int priority, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Writes the counts of lines left out whose interval has ended (server.c
 * calls it on every turn of its loop). */
void log_peer_flush(uint64_t now_usec);

/* sd_notify(3) without libsystemd: a datagram to $NOTIFY_SOCKET.  Silently
 * does nothing when not run by systemd. */
int notify(const char *state);
