/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "engine/engine.h"
#include "masterkey.h"
#include "shared/secret.h"
#include "shared/util.h"

int masterkey_derive_record_key(const uint8_t *master, uint8_t ret[MASTERKEY_RECORD_KEY_SIZE])
{
        /* A label of its own: this key only ever MACs store records, and
         * nothing else derived from the master key can stand in for it. */
        static const char info[] = "dkm store record authentication v1";

        return engine_hkdf_sha256(master, ENGINE_KEY_SIZE, NULL, 0, (const uint8_t *)info,
                                  sizeof(info) - 1, ret, MASTERKEY_RECORD_KEY_SIZE);
}

int masterkey_load(const char *path, keyring_serial_t ring, keyring_serial_t *ret,
                   uint8_t *ret_record_key, char *err, size_t err_size)
{
        _cleanup_secret_ uint8_t *key = secret_alloc(ENGINE_KEY_SIZE + 1);
        _cleanup_close_ int fd = -1;
        struct stat st;
        ssize_t n;
        int r;

        if (!key)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                r = negative_errno();
                snprintf(err, err_size, "master key %s: %s%s", path, strerror(-r),
                         r == -ENOENT ? " (create it with dkmd --init)" : "");
                return r;
        }
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode)) {
                snprintf(err, err_size, "master key %s is not a regular file", path);
                return -EINVAL;
        }
        if (st.st_mode & 0077) {
                snprintf(err, err_size, "master key %s is accessible by group or others (mode %04o); "
                         "chmod 600 it", path, (unsigned)(st.st_mode & 07777));
                return -EPERM;
        }
        /* Read one byte more than a key, to notice a file that is too long. */
        do
                n = read(fd, key, ENGINE_KEY_SIZE + 1);
        while (n < 0 && errno == EINTR);
        if (n != ENGINE_KEY_SIZE) {
                snprintf(err, err_size, "master key %s must hold exactly %d bytes", path,
                         ENGINE_KEY_SIZE);
                return -EINVAL;
        }
        if (ret_record_key) {
                r = masterkey_derive_record_key(key, ret_record_key);
                if (r < 0) {
                        snprintf(err, err_size, "cannot derive the record authentication key: %s",
                                 strerror(-r));
                        return r;
                }
        }
        r = keyring_add(ring, "dkm:master", key, ENGINE_KEY_SIZE, 0, ret);
        if (r < 0) {
                if (ret_record_key)
                        secure_wipe(ret_record_key, MASTERKEY_RECORD_KEY_SIZE);
                snprintf(err, err_size, "cannot put the master key in the keyring: %s", strerror(-r));
        }
        return r;
}

int masterkey_create(const char *path, char *err, size_t err_size)
{
        _cleanup_secret_ uint8_t *key = secret_alloc(ENGINE_KEY_SIZE);
        _cleanup_close_ int fd = -1;
        int r;

        if (!key)
                return -ENOMEM;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                if (errno == EEXIST)
                        return 0;
                r = negative_errno();
                snprintf(err, err_size, "cannot create master key %s: %s", path, strerror(-r));
                return r;
        }
        r = engine_random(key, ENGINE_KEY_SIZE);
        if (r >= 0 && write(fd, key, ENGINE_KEY_SIZE) != ENGINE_KEY_SIZE)
                r = errno ? -errno : -EIO;
        if (r >= 0 && fsync(fd) < 0)
                r = negative_errno();
        if (r < 0) {
                unlink(path);
                snprintf(err, err_size, "cannot write master key %s: %s", path, strerror(-r));
                return r;
        }
        return 1;
}
