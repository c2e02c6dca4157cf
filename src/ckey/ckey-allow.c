/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What customer keys may use, as the administrator decided in dkmd.conf
 * ([policy] pkcs11_modules and key_dirs).  A pkcs11: URI names a library
 * that dkmd loads, and both kinds of URI name files that dkmd reads: whoever
 * writes a URI would otherwise run code in dkmd or have it read any file it
 * can.  Every use checks again (a record may come from the store, written by
 * another node), not only `policy create`.
 *
 * Files and modules must also be safe where they are, because whoever can
 * change them decides what dkmd runs or which key it uses:
 *  - modules: a regular file owned by root or dkmd's own user, not writable
 *    by group or others, in directories that are the same all the way up
 *    (a writable directory lets a file be swapped between check and load);
 *  - key and PIN files: opened by their canonical path, which must stay
 *    inside a configured directory (a symlink leading out is refused), and
 *    checked on the open descriptor: a regular file owned by root or dkmd's
 *    user, not writable by group or others, and not readable by others (a
 *    key everyone can read is not the customer's secret any more).  Group
 *    read is fine: root:dkm 0640 is the usual way to give dkmd a file.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>

#include "ckey/ckey.h"
#include "shared/util.h"

static pthread_rwlock_t allow_lock = PTHREAD_RWLOCK_INITIALIZER;
static char **allowed_modules, **allowed_dirs; /* NULL-terminated, or NULL: none */

static void list_free(char **l)
{
        for (char **e = l; e && *e; e++)
                free(*e);
        free(l);
}

static int list_copy(char *const *src, char ***ret)
{
        size_t n = 0;
        char **l;

        while (src && src[n])
                n++;
        l = calloc(n + 1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(l[i] = strdup(src[i]))) {
                        list_free(l);
                        return -ENOMEM;
                }
        *ret = l;
        return 0;
}

int ckey_allow_set(char *const *modules, char *const *key_dirs)
{
        char **m = NULL, **d = NULL;

        if (list_copy(modules, &m) < 0 || list_copy(key_dirs, &d) < 0) {
                list_free(m);
                return -ENOMEM;
        }
        /* "/a/b/" is the directory "/a/b" (config.c writes them so already). */
        for (char **e = d; *e; e++)
                for (size_t n = strlen(*e); n > 1 && (*e)[n - 1] == '/'; n--)
                        (*e)[n - 1] = '\0';
        pthread_rwlock_wrlock(&allow_lock);
        list_free(allowed_modules);
        list_free(allowed_dirs);
        allowed_modules = m;
        allowed_dirs = d;
        pthread_rwlock_unlock(&allow_lock);
        return 0;
}

/* path is dir or below it; dir has no trailing '/' (except "/" itself). */
static bool within(const char *path, const char *dir)
{
        size_t n = strlen(dir);

        if (n == 1 && dir[0] == '/')
                return true;
        return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static bool owner_ok(uid_t uid)
{
        return uid == 0 || uid == geteuid();
}

/* A module file and every directory above it: see the top of this file. */
static int module_safe(const char *path, char *err, size_t err_size)
{
        _cleanup_free_ char *p = strdup(path);
        struct stat st;
        bool file = true;

        if (!p)
                return -ENOMEM;
        for (;;) {
                char *slash;

                if (stat(p[0] ? p : "/", &st) < 0) {
                        int r = negative_errno();

                        ckey_err(err, err_size, "cannot check PKCS#11 module %s: %s: %s", path,
                                 p[0] ? p : "/", strerror(-r));
                        return r;
                }
                if (file && !S_ISREG(st.st_mode)) {
                        ckey_err(err, err_size, "PKCS#11 module %s is not a regular file", path);
                        return -EINVAL;
                }
                if (!owner_ok(st.st_uid) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
                        ckey_err(err, err_size, "PKCS#11 module %s: %s %s is %s; only root or dkmd's "
                                 "user may be able to change what dkmd loads", path,
                                 file ? "the file" : "its directory", p[0] ? p : "/",
                                 owner_ok(st.st_uid) ? "writable by group or others" : "owned by another user");
                        return -EINVAL;
                }
                if (!p[0])
                        return 0;
                slash = strrchr(p, '/');
                *slash = '\0';
                file = false;
        }
}

int ckey_allow_module_path(const char *path, char **ret_path, char *err, size_t err_size)
{
        _cleanup_free_ char *real = NULL;
        bool listed = false, match = false;
        int r;

        if (!path || !path_is_clean(path)) {
                ckey_err(err, err_size, "module-path=%s: give an absolute path without '.' or '..' "
                         "components", path ? path : "");
                return -EINVAL;
        }
        real = realpath(path, NULL);
        r = real ? 0 : negative_errno();
        pthread_rwlock_rdlock(&allow_lock);
        for (char **e = allowed_modules; e && *e && !match; e++) {
                char *other;

                if ((*e)[0] != '/')
                        continue;
                if (strcmp(*e, path) == 0)
                        listed = true;
                if (!real)
                        continue;
                /* The same file under another name (a symlink) is the same module. */
                other = realpath(*e, NULL);
                match = other && strcmp(other, real) == 0;
                free(other);
        }
        pthread_rwlock_unlock(&allow_lock);
        if (!real && listed) {
                /* Allowed, but not installed (yet): the service's problem,
                 * not the customer's. */
                ckey_err(err, err_size, "cannot load PKCS#11 module %s: %s", path, strerror(-r));
                return r == -ENOMEM ? r : -ENOENT;
        }
        if (!match) {
                ckey_err(err, err_size, "PKCS#11 module %s is not in [policy] pkcs11_modules", path);
                return -EINVAL;
        }
        r = module_safe(real, err, err_size);
        if (r < 0)
                return r == -ENOMEM || r == -EINVAL ? r : -ENOENT;
        if (ret_path) {
                *ret_path = real;
                real = NULL;
        }
        return 0;
}

int ckey_allow_module_name(const char *name, char *err, size_t err_size)
{
        bool match = false;

        pthread_rwlock_rdlock(&allow_lock);
        for (char **e = allowed_modules; e && *e && !match; e++)
                match = (*e)[0] != '/' && name && strcmp(*e, name) == 0;
        pthread_rwlock_unlock(&allow_lock);
        if (!match) {
                ckey_err(err, err_size, "PKCS#11 module name '%s' is not in [policy] pkcs11_modules",
                         name ? name : "");
                return -EINVAL;
        }
        return 0;
}

int ckey_allow_open_file(const char *path, const char *what, int *ret_fd, char *err, size_t err_size)
{
        _cleanup_free_ char *real = NULL;
        _cleanup_close_ int fd = -EBADF;
        bool lexical = false, inside = false;
        struct stat st;
        int r;

        if (!path || !path_is_clean(path)) {
                ckey_err(err, err_size, "%s %s: give an absolute path without '.' or '..' components",
                         what, path ? path : "");
                return -EINVAL;
        }
        real = realpath(path, NULL);
        r = real ? 0 : negative_errno();
        pthread_rwlock_rdlock(&allow_lock);
        for (char **d = allowed_dirs; d && *d && !inside; d++) {
                char *rd;

                if (!within(path, *d))
                        continue;
                lexical = true;
                if (!real)
                        break;
                rd = realpath(*d, NULL);
                inside = rd && within(real, rd) && strcmp(real, rd) != 0;
                free(rd);
        }
        /* A symlink inside one configured directory may lead into another. */
        for (char **d = allowed_dirs; real && lexical && d && *d && !inside; d++) {
                char *rd = realpath(*d, NULL);

                inside = rd && within(real, rd) && strcmp(real, rd) != 0;
                free(rd);
        }
        pthread_rwlock_unlock(&allow_lock);
        if (!lexical) {
                ckey_err(err, err_size, "%s %s is not in [policy] key_dirs", what, path);
                return -EINVAL;
        }
        if (!real) {
                /* Missing: the caller tells "gone" from "not mounted". */
                ckey_err(err, err_size, "cannot open %s %s: %s", what, path, strerror(-r));
                return r;
        }
        if (!inside) {
                ckey_err(err, err_size, "%s %s leads to %s, outside [policy] key_dirs", what, path, real);
                return -EINVAL;
        }
        /* O_NONBLOCK: a FIFO put in its place must not hang a worker. */
        fd = open(real, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) {
                r = negative_errno();
                ckey_err(err, err_size, "cannot open %s %s: %s", what, path, strerror(-r));
                return r == -ELOOP ? -EINVAL : r;
        }
        if (fstat(fd, &st) < 0) {
                r = negative_errno();
                ckey_err(err, err_size, "cannot stat %s %s: %s", what, path, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                ckey_err(err, err_size, "%s %s is not a regular file", what, path);
                return -EINVAL;
        }
        if (!owner_ok(st.st_uid)) {
                ckey_err(err, err_size, "%s %s is owned by uid %u; it must belong to root or to dkmd's "
                         "user (uid %u)", what, path, (unsigned)st.st_uid, (unsigned)geteuid());
                return -EINVAL;
        }
        if (st.st_mode & (S_IWGRP | S_IWOTH | S_IROTH)) {
                ckey_err(err, err_size, "%s %s has mode %04o: it must not be writable by group or "
                         "others, nor readable by others (chmod g-w,o-rw)", what, path,
                         (unsigned)(st.st_mode & 07777));
                return -EINVAL;
        }
        *ret_fd = fd;
        fd = -EBADF;
        return 0;
}
