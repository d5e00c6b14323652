// File: lib/fs/writers.h
//
// Whether another process holds a file open for writing. A two-way node must not replace or
// remove a file that a local program is still writing: the program's later writes would go to
// the replaced inode — unseen (the watcher names them after a dentry that no longer exists) and
// never replicated, or lost with it. Asked with a read lease: fcntl(F_SETLEASE, F_RDLCK) fails
// with EAGAIN exactly when the file is open for writing (or mapped shared) anywhere; the lease is
// dropped at once.
// Process requirement: SIGIO ignored (an open for writing in the microsecond the probe lease is
// held breaks it, and the kernel signals the lease holder with SIGIO, whose default is to exit).
// Thread affinity: any thread.
//
//   if (fs::writers_of(fd.get()) == fs::Writers::some) return busy;   // fd opened O_RDONLY
#pragma once

namespace syncd::fs {

enum class Writers {
  none,     // nobody has it open for writing
  some,     // someone has it open for writing (or mapped shared)
  unknown,  // no leases here (a filesystem without them, leases disabled, not permitted)
};

// `fd`: the regular file, opened O_RDONLY.
Writers writers_of(int fd) noexcept;

}  // namespace syncd::fs
