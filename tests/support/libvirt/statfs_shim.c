/*
 * Copyright 2026 The nova-vtpm-migration Authors
 *
 *    Licensed under the Apache License, Version 2.0 (the "License"); you may
 *    not use this file except in compliance with the License. You may obtain
 *    a copy of the License at
 *
 *         http://www.apache.org/licenses/LICENSE-2.0
 *
 *    Unless required by applicable law or agreed to in writing, software
 *    distributed under the License is distributed on an "AS IS" BASIS,
 *    WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 *    See the License for the specific language governing permissions and
 *    limitations under the License.
 */

/*
 * LD_PRELOAD shim for the test libvirtd daemons: statfs()/statfs64() of a
 * path at or below one of the directories in NVM_SHARED_FS_PATHS
 * (colon-separated, absolute) report NFS_SUPER_MAGIC as f_type, so that
 * libvirt's qemuMigrationSrcIsSafe() sees the one instances_path that all
 * in-process Nova computes share as the shared file system it plays.
 * Every other path, and every other field, is the real file system's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>

#define NVM_NFS_SUPER_MAGIC 0x6969

static int
nvm_shared(const char *path)
{
    const char *list = getenv("NVM_SHARED_FS_PATHS");
    const char *p;
    size_t len;

    if (list == NULL || path == NULL || path[0] != '/')
        return 0;
    for (p = list; *p != '\0'; p += len + (p[len] == ':')) {
        len = strcspn(p, ":");
        if (len == 0)
            continue;
        if (strncmp(path, p, len) == 0 &&
            (path[len] == '\0' || path[len] == '/'))
            return 1;
    }
    return 0;
}

int
statfs(const char *path, struct statfs *buf)
{
    static int (*real)(const char *, struct statfs *);
    int ret;

    if (real == NULL)
        real = (int (*)(const char *, struct statfs *))dlsym(RTLD_NEXT,
                                                             "statfs");
    ret = real(path, buf);
    if (ret == 0 && nvm_shared(path))
        buf->f_type = NVM_NFS_SUPER_MAGIC;
    return ret;
}

int
statfs64(const char *path, struct statfs64 *buf)
{
    static int (*real)(const char *, struct statfs64 *);
    int ret;

    if (real == NULL)
        real = (int (*)(const char *, struct statfs64 *))dlsym(RTLD_NEXT,
                                                               "statfs64");
    ret = real(path, buf);
    if (ret == 0 && nvm_shared(path))
        buf->f_type = NVM_NFS_SUPER_MAGIC;
    return ret;
}
