// File: lib/base/memory.h
//
// The process's policy for freed heap memory. Streaming a big file moves every byte through
// 1 MiB buffers on several threads; glibc's defaults hand a freed buffer back to the kernel
// (munmap, or trimming the heap top) and the next one is faulted in and zeroed afresh — on this
// project's 2-vCPU VM that was 40-70 thousand page faults per GiB received, and a guest page the
// hypervisor has to back again costs far more than a memcpy. So freed memory is kept for reuse
// while work goes on, and handed back by release_freed_memory(), which the daemon calls once a
// burst of work is over (runtime/memory_release.h).
// Thread affinity: keep_freed_memory() once at the start of main, before any thread exists;
// release_freed_memory() from any thread.
//
//   base::keep_freed_memory();                      // main()
//   ... the work is over:                          base::release_freed_memory();
#pragma once

namespace syncd::base {

// Allocations up to 32 MiB come from the heap and freed memory up to 128 MiB stays there (the
// receiver holds up to 64 MiB of body chunks in flight). No effect outside glibc.
void keep_freed_memory() noexcept;
// Returns freed heap memory to the kernel (malloc_trim). Cheap when there is none.
void release_freed_memory() noexcept;

}  // namespace syncd::base
